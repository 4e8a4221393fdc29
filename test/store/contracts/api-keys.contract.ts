// The API key role: keys stored with their secret's hash only, revoked once, counted for ever.
import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import type { ApiKeyRecord, ApiKeyStore } from '../../../src/store/store.js';
import { T0 } from './support.js';

function key(id: string, atMs: number): Omit<ApiKeyRecord, 'revoked_at'> {
  return { id, name: `key ${id}`, namespace: '*', scope: 'admin', secret_hash: `sha256-${id}`, created_at: new Date(atMs).toISOString() };
}

export function apiKeysContract(get: () => ApiKeyStore): void {
  describe('API keys', () => {
    let store: ApiKeyStore;
    before(() => {
      store = get();
    });

    it('creates keys, reads them back, and lists them oldest first', async () => {
      assert.equal(await store.countApiKeys(), 0);
      assert.deepEqual(await store.createApiKey(key('k2', T0 + 1000)), { ...key('k2', T0 + 1000), revoked_at: null });
      await store.createApiKey({ ...key('k1', T0), name: null, namespace: 'team-a', scope: 'nodes:write' });
      assert.deepEqual(await store.getApiKey('k1'), { ...key('k1', T0), name: null, namespace: 'team-a', scope: 'nodes:write', revoked_at: null });
      assert.equal(await store.getApiKey('nope'), null);
      assert.deepEqual(
        (await store.listApiKeys()).map((record) => record.id),
        ['k1', 'k2'],
      );
    });

    it('revokes a key once, keeps it listed and counted, and knows no unknown key', async () => {
      const revoked = await store.revokeApiKey('k2', T0 + 5000);
      assert.equal(revoked?.revoked_at, new Date(T0 + 5000).toISOString());
      assert.equal((await store.revokeApiKey('k2', T0 + 9000))?.revoked_at, new Date(T0 + 5000).toISOString(), 'the first revocation stands');
      assert.equal(await store.revokeApiKey('nope', T0), null);
      assert.equal((await store.getApiKey('k2'))?.revoked_at, new Date(T0 + 5000).toISOString());
      assert.equal(await store.countApiKeys(), 2);
      assert.equal((await store.listApiKeys()).length, 2);
    });
  });
}
