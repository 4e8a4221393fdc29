// The package's name and version, read once from package.json (from src/ in development, dist/ when built).
import { existsSync, readFileSync } from 'node:fs';

function findPackageJson(): { name: string; version: string } {
  let dir = new URL('./', import.meta.url);
  for (let depth = 0; depth < 4; depth += 1) {
    const candidate = new URL('package.json', dir);
    if (existsSync(candidate)) return JSON.parse(readFileSync(candidate, 'utf8')) as { name: string; version: string };
    dir = new URL('../', dir);
  }
  return { name: 'rollcall', version: '0.0.0' };
}

export const PACKAGE = findPackageJson();
