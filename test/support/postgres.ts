// A PostgreSQL database per test file on the real server, dropped afterwards.
//
// A test that wants the schema asks for a migrated database. Under the test runner (TEST_RUN_DIR set)
// that is a copy of a template database the run migrates once (the first file to ask builds it, the
// others wait for it), which is much cheaper than migrating every database; the runner drops the
// template at the end. Outside the runner each migrated database is migrated on its own.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { TEST_RUN_TAG } from './run-tag.js';

export const ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** The migrated template of a run: it carries the run's tag like every database a test makes. */
export function templateDatabaseOf(tag: string): string {
  return `rollcall_template_${tag}_migrated`;
}

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

async function withAdmin<T>(work: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    return await work(admin);
  } finally {
    await admin.end();
  }
}

async function migrateDatabase(name: string): Promise<void> {
  // Imported here: the leftover check imports this module and needs no store.
  const { openStore } = await import('../../src/store/open-store.js');
  const store = await openStore({ kind: 'postgres', url: withDatabase(ADMIN_URL, name) });
  try {
    await store.migrate();
  } finally {
    await store.close();
  }
}

let template: Promise<string> | undefined;

/**
 * The run's migrated template, built by whichever file asks first. It is built under another name and
 * renamed when complete, under a lock, so no file ever copies a half-migrated template.
 */
function migratedTemplate(): Promise<string> {
  template ??= withAdmin(async (admin) => {
    const name = templateDatabaseOf(TEST_RUN_TAG);
    // A session lock: should the builder die, its connection ends and the lock with it.
    await admin.query('SELECT pg_advisory_lock(hashtext($1))', [name]);
    try {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (exists.rows.length === 0) {
        const building = `rollcall_building_${TEST_RUN_TAG}_${process.pid}`;
        await admin.query(`DROP DATABASE IF EXISTS ${building}`);
        await admin.query(`CREATE DATABASE ${building}`);
        await migrateDatabase(building);
        await admin.query(`ALTER DATABASE ${building} RENAME TO ${name}`);
      }
    } finally {
      await admin.query('SELECT pg_advisory_unlock(hashtext($1))', [name]);
    }
    return name;
  });
  return template;
}

/**
 * A new database, empty, or with `migrated` holding the current schema (as a server's start would leave
 * it). `prefix` names it; the run's tag in the name lets the test runner find one a test forgot to drop.
 */
export async function createTestDatabase(prefix = 'rollcall_test', options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const name = `${prefix}_${TEST_RUN_TAG}_${process.pid}_${randomBytes(4).toString('hex')}`;
  const fromTemplate = options.migrated === true && process.env.TEST_RUN_DIR !== undefined ? await migratedTemplate() : undefined;
  await withAdmin((admin) => admin.query(fromTemplate ? `CREATE DATABASE ${name} TEMPLATE ${fromTemplate}` : `CREATE DATABASE ${name}`));
  const database: TestDatabase = {
    name,
    url: withDatabase(ADMIN_URL, name),
    async drop() {
      await withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
  if (options.migrated === true && !fromTemplate) {
    try {
      await migrateDatabase(name);
    } catch (error) {
      await database.drop();
      throw error;
    }
  }
  return database;
}
