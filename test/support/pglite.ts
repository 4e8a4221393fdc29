// A migrated embedded database to start test servers from. A new PGlite database runs initdb in WASM,
// which takes seconds; PGlite can instead start from a tarball of a data folder (`loadDataDir`, made by
// `dumpDataDir`). Under the test runner (TEST_RUN_DIR set) the run keeps one such tarball, migrated:
// the first file to ask builds it, the others wait for it. Outside the runner there is none, and every
// database is made as the product makes it.
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { migrate } from '../../src/store/migrate.js';
import type { SqlClient, SqlExecutor } from '../../src/store/sql-client.js';
import { pollUntil } from './processes.js';

function executor(db: Pick<PGlite, 'query'>): SqlExecutor {
  return {
    query: async <Row>(text: string, params?: unknown[]) => {
      const result = await db.query<Row>(text, params);
      return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
    },
  };
}

/** Makes a fresh database, migrates it, and returns its data folder as a tarball. */
async function buildTemplate(): Promise<Uint8Array> {
  const db = new PGlite();
  try {
    await db.waitReady;
    const client: Pick<SqlClient, 'transaction'> = { transaction: (work) => db.transaction((tx) => work(executor(tx))) };
    await migrate(client as SqlClient);
    const tarball = await db.dumpDataDir('none');
    return new Uint8Array(await tarball.arrayBuffer());
  } finally {
    await db.close();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readIfThere(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Takes the build lock, or says who holds it: a builder that died has its lock taken over. */
async function tryLock(lockPath: string): Promise<boolean> {
  try {
    await writeFile(lockPath, String(process.pid), { flag: 'wx' });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const holder = Number((await readIfThere(lockPath))?.toString('utf8'));
  if (Number.isInteger(holder) && holder > 0 && !alive(holder)) await unlink(lockPath).catch(() => undefined);
  return false;
}

async function runTemplate(runDir: string): Promise<Blob> {
  const path = join(runDir, 'pglite-template.tar');
  const lockPath = `${path}.lock`;
  const ready = await pollUntil(
    async () => {
      const existing = await readIfThere(path);
      if (existing) return existing;
      if (!(await tryLock(lockPath))) return undefined;
      try {
        // Written whole, then renamed into place: a reader never sees half a tarball.
        await writeFile(`${path}.${process.pid}`, await buildTemplate());
        await rename(`${path}.${process.pid}`, path);
      } finally {
        await unlink(lockPath).catch(() => undefined);
      }
      return readFile(path);
    },
    (tarball) => tarball !== undefined,
    { what: 'the migrated PGlite template another test file builds', timeoutMs: 60_000, intervalMs: 200 },
  );
  return new Blob([ready as Buffer]);
}

let template: Promise<Blob | undefined> | undefined;

/** The run's migrated data folder tarball, or undefined outside the test runner. */
export function pgliteTemplate(): Promise<Blob | undefined> {
  const runDir = process.env.TEST_RUN_DIR;
  template ??= runDir === undefined ? Promise.resolve(undefined) : runTemplate(runDir);
  return template;
}
