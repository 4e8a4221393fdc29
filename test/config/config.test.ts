// Configuration: precedence of sources, the seeds' variables, and errors that name the field.
import { strict as assert } from 'node:assert';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig, redactUrl } from '../../src/config/config.js';
import { isRollcallError } from '../../src/domain/errors.js';

function configError(run: () => unknown): { message: string; field: unknown } {
  try {
    run();
  } catch (error) {
    assert.ok(isRollcallError(error));
    assert.equal(error.code, 'CONFIG_INVALID');
    return { message: error.message, field: error.details?.field };
  }
  throw new Error('expected a configuration error');
}

describe('configuration', () => {
  it('has documented defaults: loopback, port 9205, embedded database, 90 s leases', () => {
    const config = loadConfig({ env: {} });
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, 9205);
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.dataDir, '.rollcall/data');
    assert.equal(config.leaseTtlSeconds, 90);
    assert.equal(config.retentionHours, 24);
  });

  it('layers file < environment < flags', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rollcall-config-'));
    const file = join(dir, 'rollcall.json');
    await writeFile(file, JSON.stringify({ port: 1111, leaseTtlSeconds: 10, namespace: 'fromfile' }));
    const config = loadConfig({ env: { ROLLCALL_PORT: '2222', ROLLCALL_LEASE_TTL_SECONDS: '20' }, file, flags: { port: 3333, host: undefined } });
    assert.equal(config.port, 3333);
    assert.equal(config.leaseTtlSeconds, 20);
    assert.equal(config.namespace, 'fromfile');
    assert.equal(config.host, '127.0.0.1');
  });

  it('honours the seeds variables', () => {
    const config = loadConfig({
      env: { POSTGRES_HOST: 'db.internal', POSTGRES_PORT: '6543', POSTGRES_DB: 'omninode_bridge', POSTGRES_USER: 'bridge', POSTGRES_PASSWORD: 'p@ss/word', NODE_TTL_HOURS: '48', CLEANUP_INTERVAL_HOURS: '2' },
    });
    const url = new URL(config.databaseUrl as string);
    assert.equal(url.hostname, 'db.internal');
    assert.equal(url.port, '6543');
    assert.equal(url.pathname, '/omninode_bridge');
    assert.equal(url.username, 'bridge');
    assert.equal(decodeURIComponent(url.password), 'p@ss/word');
    assert.equal(config.retentionHours, 48);
    assert.equal(config.cleanupIntervalHours, 2);
    assert.equal(loadConfig({ env: { POSTGRES_HOST: 'x', DATABASE_URL: 'postgres://a@b/c' } }).databaseUrl, 'postgres://a@b/c');
  });

  it('names the bad field and where it came from', () => {
    const port = configError(() => loadConfig({ env: {}, flags: { port: 99999 } }));
    assert.equal(port.field, 'port');
    assert.match(port.message, /"port" from flags/);
    const ttl = configError(() => loadConfig({ env: { ROLLCALL_LEASE_TTL_SECONDS: 'abc' } }));
    assert.equal(ttl.field, 'leaseTtlSeconds');
    assert.match(ttl.message, /environment/);
    const level = configError(() => loadConfig({ env: { ROLLCALL_LOG_LEVEL: 'loud' } }));
    assert.equal(level.field, 'logLevel');
    const unknown = configError(() => loadConfig({ env: {}, flags: { nope: 1 } as never }));
    assert.equal(unknown.field, 'nope');
  });

  it('never echoes a database URL (it may hold a password)', () => {
    const bad = configError(() => loadConfig({ env: { ROLLCALL_DATABASE_URL: 'not a url with s3cret' } }));
    assert.equal(bad.field, 'databaseUrl');
    assert.ok(!bad.message.includes('s3cret'));
    assert.equal(redactUrl('postgres://u:s3cret@h:5432/d'), 'postgres://u:***@h:5432/d');
  });

  it('refuses a config file that is not a JSON object, naming the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rollcall-config-'));
    const file = join(dir, 'bad.json');
    await writeFile(file, '[1,2]');
    assert.match(configError(() => loadConfig({ env: {}, file })).message, /bad\.json/);
    assert.match(configError(() => loadConfig({ env: {}, file: join(dir, 'missing.json') })).message, /Cannot read/);
  });
});
