// The package entry points a node or a consumer imports: `rollcall/agent` and `rollcall/client` must
// load none of the server (fastify, pg, PGlite), so a node that only announces itself stays small.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from '../support/processes.js';

// Runs `import(specifier)` in a fresh process whose module loader records every URL it resolves.
function modulesLoadedBy(specifier: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'rollcall-entry-'));
  const record = join(dir, 'resolved.txt');
  const hooks = `data:text/javascript,${encodeURIComponent(`
    import { appendFileSync } from 'node:fs';
    export async function resolve(specifier, context, next) {
      const resolved = await next(specifier, context);
      appendFileSync(${JSON.stringify(record)}, resolved.url + '\\n');
      return resolved;
    }`)}`;
  const script = `
    import { register } from 'node:module';
    register(${JSON.stringify(hooks)});
    const entry = await import(${JSON.stringify(specifier)});
    process.stdout.write(Object.keys(entry).sort().join(','));`;
  try {
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO_ROOT, encoding: 'utf8' });
    assert.equal(child.status, 0, child.stderr);
    return readFileSync(record, 'utf8').split('\n').filter(Boolean);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const SERVER_PACKAGES = ['fastify', 'pg', '@electric-sql/pglite', '@fastify/swagger'];
const serverModules = (urls: string[]): string[] =>
  urls.filter((url) => SERVER_PACKAGES.some((name) => url.includes(`/node_modules/${name}/`)) || /\/dist\/src\/(server|api|store|engine)\b/.test(url));

describe('package entry points', () => {
  it('rollcall/agent loads no server module', () => {
    const loaded = modulesLoadedBy('rollcall/agent');
    assert.ok(
      loaded.some((url) => url.endsWith('/dist/src/agent/node-agent.js')),
      'the agent itself was loaded',
    );
    assert.deepEqual(serverModules(loaded), []);
  });

  it('rollcall/client loads no server module', () => {
    const loaded = modulesLoadedBy('rollcall/client');
    assert.ok(
      loaded.some((url) => url.endsWith('/dist/src/client/rollcall-client.js')),
      'the client itself was loaded',
    );
    assert.deepEqual(serverModules(loaded), []);
  });

  it('the whole package (rollcall) does load the server: the check can see it', () => {
    assert.notDeepEqual(serverModules(modulesLoadedBy('rollcall')), []);
  });
});
