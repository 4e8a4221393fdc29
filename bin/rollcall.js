#!/usr/bin/env node
// The `rollcall` binary: runs the built CLI (npm run build makes dist/).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/src/cli/index.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('rollcall: not built yet; run `npm run build` first.\n');
  process.exit(1);
}
await import(entry.href);
