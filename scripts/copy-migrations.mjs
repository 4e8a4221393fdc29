// Copies the SQL migrations next to the compiled store, where the migrator looks for them.
import { cpSync } from 'node:fs';

cpSync(new URL('../src/store/migrations/', import.meta.url), new URL('../dist/src/store/migrations/', import.meta.url), { recursive: true });
