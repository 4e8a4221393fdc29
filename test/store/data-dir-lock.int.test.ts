// One owner per embedded data folder, on the real file system: a held folder is refused with its
// holder named, a dead holder's lock is taken over (once, however many race for it), a holder on
// another host is never taken over, and the store releases the folder when it closes.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isRollcallError, type RollcallError } from '../../src/domain/errors.js';
import { openStore } from '../../src/store/open-store.js';
import { DataDirLock, LOCK_FILE, readDataDirHolder, type DataDirHolder } from '../../src/store/pglite/data-dir-lock.js';
import { PATIENCE } from '../support/processes.js';

const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function folder(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rollcall-lock-'));
  dirs.push(dir);
  const data = join(dir, 'data');
  await mkdir(data);
  return data;
}

/** The PID of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('exit', resolve));
  assert.ok(child.pid !== undefined);
  return child.pid;
}

async function writeHolder(dataDir: string, holder: Partial<DataDirHolder>): Promise<void> {
  const full: DataDirHolder = { pid: 1, host: hostname(), command: 'serve', started_at: new Date().toISOString(), url: null, process_start: null, token: 'left-behind', ...holder };
  await writeFile(join(dataDir, LOCK_FILE), JSON.stringify(full));
}

function lockedError(error: unknown): error is RollcallError {
  return isRollcallError(error) && error.code === 'DATA_DIR_LOCKED';
}

describe('data folder lock', () => {
  it('refuses a second holder, naming the first (PID, host, URL), until it is released', async () => {
    const dataDir = await folder();
    const first = await DataDirLock.acquire(dataDir, { command: 'serve' });
    await first.publishUrl('http://127.0.0.1:9999');
    await assert.rejects(DataDirLock.acquire(dataDir, { command: 'serve', hint: 'stop it' }), (error: unknown) => {
      assert.ok(lockedError(error), String(error));
      assert.match(error.message, new RegExp(`a server \\(pid ${process.pid} on ${hostname()}, http://127\\.0\\.0\\.1:9999`));
      assert.match(error.message, /stop it/);
      return true;
    });
    assert.equal((await readDataDirHolder(dataDir))?.url, 'http://127.0.0.1:9999');
    await first.release();
    assert.equal(await readDataDirHolder(dataDir), null);
    const second = await DataDirLock.acquire(dataDir, { command: 'serve' });
    await second.release();
  });

  it('takes over the lock of a process that is gone', async () => {
    const dataDir = await folder();
    await writeHolder(dataDir, { pid: await deadPid() });
    const lock = await DataDirLock.acquire(dataDir, { command: 'serve' });
    assert.equal((await readDataDirHolder(dataDir))?.token, lock.info.token);
    await lock.release();
  });

  it('takes over a lock naming our own PID that this process does not hold (a restarted container)', async () => {
    const dataDir = await folder();
    await writeHolder(dataDir, { pid: process.pid });
    const lock = await DataDirLock.acquire(dataDir, { command: 'serve' });
    await lock.release();
  });

  it('takes over a lock whose PID now belongs to a later process (start times differ)', { skip: process.platform !== 'linux' }, async () => {
    const dataDir = await folder();
    // Our parent is alive, but it is not the process that wrote this lock.
    await writeHolder(dataDir, { pid: process.ppid, process_start: '1' });
    const lock = await DataDirLock.acquire(dataDir, { command: 'serve' });
    await lock.release();
  });

  it('never takes over a holder on another host, and says how to free it', async () => {
    const dataDir = await folder();
    await writeHolder(dataDir, { host: 'elsewhere.example', pid: await deadPid() });
    await assert.rejects(DataDirLock.acquire(dataDir, { command: 'serve' }), (error: unknown) => {
      assert.ok(lockedError(error));
      assert.match(error.message, /on elsewhere\.example/);
      assert.match(error.message, /another host/);
      assert.match(error.message, new RegExp(`delete ${join(dataDir, LOCK_FILE).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      return true;
    });
  });

  it("gives a dead holder's folder to exactly one of many racing takers", async () => {
    const dataDir = await folder();
    await writeHolder(dataDir, { pid: await deadPid() });
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => DataDirLock.acquire(dataDir, { command: 'serve' })));
    const won = results.filter((result): result is PromiseFulfilledResult<DataDirLock> => result.status === 'fulfilled');
    assert.equal(won.length, 1, JSON.stringify(results.map((result) => result.status)));
    for (const result of results) if (result.status === 'rejected') assert.ok(lockedError(result.reason), String(result.reason));
    assert.equal((await readDataDirHolder(dataDir))?.token, won[0]?.value.info.token);
    await won[0]?.value.release();
  });

  it('waits for a CLI command that holds the folder, not for a server', async () => {
    const dataDir = await folder();
    const command = await DataDirLock.acquire(dataDir, { command: 'key create' });
    const waiting = DataDirLock.acquire(dataDir, { command: 'serve', waitMs: 30_000 });
    await command.release();
    await (await waiting).release();
  });

  it('is taken by the embedded store for as long as it is open', { timeout: 60_000 * PATIENCE }, async () => {
    const dataDir = await folder();
    const store = await openStore({ kind: 'pglite', dataDir, command: 'test' });
    try {
      await assert.rejects(openStore({ kind: 'pglite', dataDir, lockWaitMs: 0 }), (error: unknown) => lockedError(error) && /`rollcall test`/.test(error.message));
      const holder = JSON.parse(await readFile(join(dataDir, LOCK_FILE), 'utf8')) as DataDirHolder;
      assert.deepEqual([holder.pid, holder.host, holder.command], [process.pid, hostname(), 'test']);
    } finally {
      await store.close();
    }
    assert.equal(await readDataDirHolder(dataDir), null);
  });
});
