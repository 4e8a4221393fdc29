// Applies the numbered SQL migrations in order, each in a transaction, and records them.
import { readdir, readFile } from 'node:fs/promises';
import type { SqlClient } from './sql-client.js';

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);
/** Serialises migrations when several instances start together against one database. */
const MIGRATION_LOCK_KEY = 0x726f6c6c;

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

export async function loadMigrations(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((file) => /^\d{3}_[\w-]+\.sql$/.test(file)).sort();
  return Promise.all(
    files.map(async (file) => ({
      id: Number(file.slice(0, 3)),
      name: file.replace(/\.sql$/, ''),
      sql: await readFile(new URL(file, MIGRATIONS_DIR), 'utf8'),
    })),
  );
}

export async function migrate(client: SqlClient): Promise<number[]> {
  const migrations = await loadMigrations();
  // Even IF NOT EXISTS races between instances starting together: take the lock first.
  await client.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await tx.query(`CREATE TABLE IF NOT EXISTS rollcall_migrations (
      id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
  });
  const applied: number[] = [];
  for (const migration of migrations) {
    const done = await client.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      const seen = await tx.query('SELECT 1 FROM rollcall_migrations WHERE id = $1', [migration.id]);
      if (seen.rows.length > 0) return false;
      for (const statement of splitStatements(migration.sql)) await tx.query(statement);
      await tx.query('INSERT INTO rollcall_migrations (id, name) VALUES ($1, $2)', [migration.id, migration.name]);
      return true;
    });
    if (done) applied.push(migration.id);
  }
  return applied;
}

/** Splits a migration into statements on semicolons at line ends; migrations avoid `$$` bodies. */
function splitStatements(sql: string): string[] {
  return sql
    .split(/;\s*$/m)
    .map((statement) => statement.replace(/^\s*--.*$/gm, '').trim())
    .filter((statement) => statement.length > 0);
}
