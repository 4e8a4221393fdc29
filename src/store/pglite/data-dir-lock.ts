// One owner per embedded data folder: `rollcall.lock` in the folder names the process that has the
// folder open (PID, host, command, start, and a server's URL once it listens). Two PGlite instances
// on one folder each keep their own buffers and WAL position, so a second opener silently loses
// writes the first acknowledged; every opener takes this lock first.
//
// Written here rather than with proper-lockfile: that library judges staleness by an mtime it
// refreshes on a timer, so a crashed owner's folder stays locked for the stale period, a long
// synchronous PGlite call (the event loop blocked past it) is taken for a crash, and it keeps no
// holder details to name. Here a holder is stale only when its PID is gone on this host (or is another
// process now, by its start time in /proc); a holder on another host is never taken over.
import { randomUUID } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { RollcallError } from '../../domain/errors.js';

export const LOCK_FILE = 'rollcall.lock';

/** What the lock file holds. */
export interface DataDirHolder {
  pid: number;
  host: string;
  /** The command that holds it: `serve`, or a CLI command such as `key create`. */
  command: string;
  started_at: string;
  /** The server's API, once it listens (a loopback address when it listens on every interface). */
  url: string | null;
  /** The holder's start time as the kernel counts it (Linux), to tell it from a later process with its PID. */
  process_start: string | null;
  /** Unique per acquisition: a release or takeover touches only the lock it read. */
  token: string;
}

export type HolderState = 'alive' | 'stale' | 'other_host';

/** Tokens of the locks this process holds or is taking: a lock naming our own PID is alive only if listed here. */
const heldHere = new Set<string>();
/** Locks still held, released synchronously should the process exit without releasing them. */
const live = new Set<DataDirLock>();
let exitHookInstalled = false;

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); null where there is no /proc. */
function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, as another user's process.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the holder still runs: on another host it cannot be told, so it counts as holding. */
export function holderState(holder: DataDirHolder): HolderState {
  if (holder.host !== hostname()) return 'other_host';
  if (holder.pid === process.pid) return heldHere.has(holder.token) ? 'alive' : 'stale';
  if (!pidAlive(holder.pid)) return 'stale';
  // The PID was reused by a process that started after the holder: the holder is gone.
  if (holder.process_start !== null) {
    const now = processStart(holder.pid);
    if (now !== null && now !== holder.process_start) return 'stale';
  }
  return 'alive';
}

function isHolder(value: unknown): value is DataDirHolder {
  if (value === null || typeof value !== 'object') return false;
  const record = value as Record<string, unknown>;
  return Number.isInteger(record.pid) && typeof record.host === 'string' && typeof record.token === 'string' && typeof record.command === 'string';
}

async function readHolderAt(path: string): Promise<DataDirHolder | null | 'corrupt'> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (!isHolder(parsed)) return 'corrupt';
    const fields = parsed as Partial<Record<keyof DataDirHolder, unknown>>;
    return {
      ...parsed,
      url: typeof fields.url === 'string' ? fields.url : null,
      process_start: typeof fields.process_start === 'string' ? fields.process_start : null,
      started_at: typeof fields.started_at === 'string' ? fields.started_at : '',
    };
  } catch {
    return 'corrupt';
  }
}

export function lockPathOf(dataDir: string): string {
  return join(dataDir, LOCK_FILE);
}

/** The folder's holder, if any (alive or not: see `holderState`). */
export async function readDataDirHolder(dataDir: string): Promise<DataDirHolder | null> {
  const holder = await readHolderAt(lockPathOf(dataDir));
  return holder === 'corrupt' ? null : holder;
}

/** "a server (pid 123 on vm, http://127.0.0.1:9205)" or "`rollcall key create` (pid 123 on vm)". */
export function describeHolder(holder: DataDirHolder): string {
  const who = holder.command === 'serve' ? 'a server' : `\`rollcall ${holder.command}\``;
  const where = [`pid ${holder.pid} on ${holder.host}`, ...(holder.url ? [holder.url] : []), ...(holder.started_at ? [`since ${holder.started_at}`] : [])];
  return `${who} (${where.join(', ')})`;
}

function lockedError(dataDir: string, holder: DataDirHolder, state: HolderState, hint: string): RollcallError {
  const otherHost = state === 'other_host' ? ` It runs on another host, so it cannot be checked from here: if it no longer uses the folder, delete ${lockPathOf(dataDir)}.` : '';
  return new RollcallError('DATA_DIR_LOCKED', `${describeHolder(holder)} owns the data folder ${dataDir}: ${hint}.${otherHost}`, {
    details: { data_dir: dataDir, lock_file: lockPathOf(dataDir), holder },
  });
}

export interface AcquireOptions {
  /** Who takes it: `serve`, or the CLI command. */
  command: string;
  /** How long to wait for a holder that is not a server (a CLI command is done in seconds); default 0. */
  waitMs?: number;
  /** The remedy named when the folder is held, e.g. "stop it, or serve another --data-dir". */
  hint?: string;
}

const DEFAULT_HINT = 'stop it first, or use another --data-dir';
const RETRY_MS = 100;

/** An exclusive hold on one embedded data folder, released by `release()` or when the process exits. */
export class DataDirLock {
  readonly dataDir: string;
  readonly path: string;
  private holder: DataDirHolder;
  private released = false;

  private constructor(dataDir: string, holder: DataDirHolder) {
    this.dataDir = dataDir;
    this.path = lockPathOf(dataDir);
    this.holder = holder;
    live.add(this);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', () => {
        for (const lock of live) lock.releaseSync();
      });
    }
  }

  /**
   * Takes the folder (which must exist), or refuses with DATA_DIR_LOCKED naming the holder. A holder
   * that is gone (its PID dead on this host) is taken over.
   */
  static async acquire(dataDir: string, options: AcquireOptions): Promise<DataDirLock> {
    const dir = resolve(dataDir);
    const path = lockPathOf(dir);
    const holder: DataDirHolder = {
      pid: process.pid,
      host: hostname(),
      command: options.command,
      started_at: new Date().toISOString(),
      url: null,
      process_start: processStart(process.pid),
      token: randomUUID(),
    };
    // Written whole first, then linked into place: link() fails if the lock exists, and a reader never sees half a file.
    const draft = `${path}.${holder.token}.tmp`;
    await writeFile(draft, `${JSON.stringify(holder)}\n`, { mode: 0o644 });
    const deadline = Date.now() + (options.waitMs ?? 0);
    heldHere.add(holder.token);
    let acquired = false;
    try {
      for (;;) {
        try {
          await link(draft, path);
          acquired = true;
          return new DataDirLock(dir, holder);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        }
        const current = await readHolderAt(path);
        if (current === null) continue;
        if (current === 'corrupt') {
          throw new RollcallError('DATA_DIR_LOCKED', `The lock file ${path} cannot be read. If no rollcall process uses ${dir}, delete it.`, {
            details: { data_dir: dir, lock_file: path },
          });
        }
        const state = holderState(current);
        if (state === 'stale') {
          await takeOver(path, draft, current);
          continue;
        }
        if (state === 'alive' && current.command !== 'serve' && Date.now() < deadline) {
          await new Promise((done) => setTimeout(done, RETRY_MS));
          continue;
        }
        throw lockedError(dir, current, state, options.hint ?? DEFAULT_HINT);
      }
    } finally {
      if (!acquired) heldHere.delete(holder.token);
      await unlink(draft).catch(() => undefined);
    }
  }

  get info(): DataDirHolder {
    return this.holder;
  }

  /** Records where the server listens, for CLI commands that then go through its API. */
  async publishUrl(url: string): Promise<void> {
    if (this.released) return;
    const next = { ...this.holder, url };
    const draft = `${this.path}.${this.holder.token}.tmp`;
    await writeFile(draft, `${JSON.stringify(next)}\n`, { mode: 0o644 });
    // rename() replaces the file whole: readers see the old holder or the new one.
    await rename(draft, this.path);
    this.holder = next;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    live.delete(this);
    const current = await readHolderAt(this.path).catch(() => null);
    if (current !== null && current !== 'corrupt' && current.token === this.holder.token) await unlink(this.path).catch(() => undefined);
    heldHere.delete(this.holder.token);
  }

  /** The `exit` path: nothing asynchronous runs any more. */
  releaseSync(): void {
    if (this.released) return;
    this.released = true;
    live.delete(this);
    try {
      const current = JSON.parse(readFileSync(this.path, 'utf8')) as unknown;
      if (isHolder(current) && current.token === this.holder.token) unlinkSync(this.path);
    } catch {
      // Already gone, or replaced: nothing of ours to remove.
    }
  }
}

/**
 * Removes the lock of a holder that is gone, unless another process took it over first. The removal
 * happens under `<lock>.takeover` (created the same exclusive way), so two processes that both found
 * the lock stale cannot each remove it after the other already took the folder.
 */
async function takeOver(path: string, draft: string, stale: DataDirHolder): Promise<void> {
  const guard = `${path}.takeover`;
  try {
    await link(draft, guard);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    // Another process is taking over right now; a guard left by one that died is removed.
    const guardHolder = await readHolderAt(guard);
    if (guardHolder === 'corrupt' || (guardHolder !== null && holderState(guardHolder) === 'stale')) await unlink(guard).catch(() => undefined);
    else await new Promise((done) => setTimeout(done, RETRY_MS / 4));
    return;
  }
  try {
    const current = await readHolderAt(path);
    if (current !== null && current !== 'corrupt' && current.token === stale.token) await unlink(path);
  } finally {
    await unlink(guard).catch(() => undefined);
  }
}
