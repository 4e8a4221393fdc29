// Mirrors the SQL migrations next to the compiled store, where the migrator looks for them. Files
// whose content is already there are left alone (a rebuild with nothing changed writes nothing), and
// a migration no longer in the sources is removed, so the migrator never applies a stale copy.
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const from = fileURLToPath(new URL('../src/store/migrations/', import.meta.url));
const to = fileURLToPath(new URL('../dist/src/store/migrations/', import.meta.url));

const changed = (source, target) => !existsSync(target) || !readFileSync(source).equals(readFileSync(target));
cpSync(from, to, { recursive: true, filter: (source, target) => statSync(source).isDirectory() || changed(source, target) });
const sources = new Set(readdirSync(from));
for (const name of readdirSync(to)) if (!sources.has(name)) rmSync(join(to, name));
