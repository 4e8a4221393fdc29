// Secure by default, through the built CLI: `serve` on a non-loopback address without keys refuses to
// start and says how to fix it; --insecure starts it; `key create|list|revoke` work on the store.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { freePort, killAllCli, runCli, spawnCli } from '../support/processes.js';

let database: TestDatabase;
before(async () => {
  database = await createTestDatabase();
});
after(async () => {
  await killAllCli();
  await database.drop();
});

describe('secure by default', () => {
  it('refuses to serve 0.0.0.0 without keys, naming `rollcall key create` and --insecure', async () => {
    const result = await runCli(['serve', '--host', '0.0.0.0', '--port', '0', '--database-url', database.url]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /Refusing to serve 0\.0\.0\.0 without authentication/);
    assert.match(result.stderr, /rollcall key create/);
    assert.match(result.stderr, /--insecure/);
  });

  it('serves 0.0.0.0 when started --insecure (flag or ROLLCALL_INSECURE=true)', async () => {
    for (const [args, env] of [
      [['--insecure'], {}],
      [[], { ROLLCALL_INSECURE: 'true' }],
    ] as const) {
      const port = await freePort();
      const proc = spawnCli(['serve', '--host', '0.0.0.0', '--port', String(port), '--database-url', database.url, ...args], { env });
      await proc.waitForLine('stderr', /serving http/, 20_000);
      assert.equal((await fetch(`http://127.0.0.1:${port}/api/v1/nodes`)).status, 200);
      proc.kill('SIGTERM');
      await proc.waitForExit(15_000);
    }
  });

  it('creates, lists and revokes keys on the store; with a key, 0.0.0.0 serves and requires it', async () => {
    const created = await runCli(['key', 'create', '--scope', 'admin', '--namespace', '*', '--name', 'ops', '--database-url', database.url]);
    assert.equal(created.code, 0, created.stderr);
    const key = created.stdout.trim();
    assert.match(key, /^rk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const id = key.split('_')[1] as string;

    const listed = await runCli(['key', 'list', '--json', '--database-url', database.url]);
    const keys = JSON.parse(listed.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(
      keys.map((entry) => [entry.id, entry.scope, entry.namespace, entry.name]),
      [[id, 'admin', '*', 'ops']],
    );
    assert.ok(!listed.stdout.includes(key.slice(-43)));

    const port = await freePort();
    const proc = spawnCli(['serve', '--host', '0.0.0.0', '--port', String(port), '--database-url', database.url]);
    await proc.waitForLine('stderr', /serving http/, 20_000);
    assert.equal((await fetch(`http://127.0.0.1:${port}/api/v1/nodes`)).status, 401);
    assert.equal((await fetch(`http://127.0.0.1:${port}/api/v1/nodes`, { headers: { authorization: `Bearer ${key}` } })).status, 200);
    proc.kill('SIGTERM');
    await proc.waitForExit(15_000);

    const revoked = await runCli(['key', 'revoke', id, '--database-url', database.url]);
    assert.equal(revoked.code, 0, revoked.stderr);
    const missing = await runCli(['key', 'revoke', 'ffffffffffffffff', '--database-url', database.url]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /API_KEY_NOT_FOUND/);
    const bad = await runCli(['key', 'create', '--scope', 'root', '--namespace', 'a', '--database-url', database.url]);
    assert.equal(bad.code, 1);
  });
});
