// The identity role: join tokens (hashed), issued certificates, revocations.
import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import type { IdentityStore, JoinTokenRecord } from '../../../src/store/store.js';
import { T0 } from './support.js';

const iso = (ms: number): string => new Date(ms).toISOString();

function token(id: string, overrides: Partial<JoinTokenRecord> = {}): JoinTokenRecord {
  return { id, token_hash: `hash-${id}`, namespace: 'default', node_type: 'worker', uses_remaining: 1, max_uses: 1, expires_at: iso(T0 + 3_600_000), created_at: iso(T0), ...overrides };
}

export function identityContract(get: () => IdentityStore): void {
  describe('identity', () => {
    let store: IdentityStore;
    before(() => {
      store = get();
    });

    it('takes the uses of a join token one at a time, for its node_type only, until none are left', async () => {
      await store.createJoinToken(token('twice', { uses_remaining: 2, max_uses: 2 }));
      const wrong = await store.consumeJoinToken('hash-twice', 'gateway', T0 + 1000);
      assert.equal(wrong.status, 'wrong_node_type');
      assert.equal(wrong.status === 'wrong_node_type' && wrong.token.uses_remaining, 2, 'a wrong node_type takes no use');
      const first = await store.consumeJoinToken('hash-twice', 'worker', T0 + 1000);
      assert.equal(first.status, 'consumed');
      assert.deepEqual(first.status === 'consumed' && { ...first.token, uses_remaining: first.token.uses_remaining }, { ...token('twice', { max_uses: 2 }), uses_remaining: 1 });
      assert.equal((await store.consumeJoinToken('hash-twice', 'worker', T0 + 2000)).status, 'consumed');
      assert.equal((await store.consumeJoinToken('hash-twice', 'worker', T0 + 3000)).status, 'used_up');
    });

    it('refuses an unknown or expired token', async () => {
      assert.equal((await store.consumeJoinToken('hash-never', 'worker', T0)).status, 'unknown');
      await store.createJoinToken(token('late', { expires_at: iso(T0 + 1000) }));
      assert.equal((await store.consumeJoinToken('hash-late', 'worker', T0 + 1000)).status, 'expired');
    });

    it('lets exactly one of two concurrent exchanges of a single-use token win', async () => {
      await store.createJoinToken(token('once'));
      const uses = await Promise.all([store.consumeJoinToken('hash-once', 'worker', T0), store.consumeJoinToken('hash-once', 'worker', T0)]);
      assert.deepEqual(uses.map((use) => use.status).sort(), ['consumed', 'used_up']);
    });

    it('revokes by serial, or by SPIFFE ID for certificates issued up to the revocation, and lists revocations in order', async () => {
      await store.recordCertificate({
        serial: 'ab01',
        spiffe_id: 'spiffe://test/ns/default/worker/n1',
        namespace: 'default',
        node_type: 'worker',
        node_id: 'n1',
        not_before: iso(T0),
        not_after: iso(T0 + 3_600_000),
        issued_via: 'join_token',
      });
      assert.equal(await store.isRevoked('ab01', 'spiffe://test/ns/default/worker/n1', T0), false);
      const bySerial = await store.revokeCertificate({ serial: 'ab01', reason: 'key_compromise' }, T0 + 1000);
      assert.deepEqual({ ...bySerial, id: 0 }, { id: 0, serial: 'ab01', spiffe_id: null, reason: 'key_compromise', revoked_at: iso(T0 + 1000) });
      assert.equal(await store.isRevoked('ab01', 'spiffe://other', T0 + 5000), true);
      const byId = await store.revokeCertificate({ spiffe_id: 'spiffe://test/ns/default/worker/n2', reason: 'decommissioned' }, T0 + 10_000);
      assert.equal(await store.isRevoked('cd02', 'spiffe://test/ns/default/worker/n2', T0 + 9_000), true, 'issued before the revocation');
      assert.equal(await store.isRevoked('cd03', 'spiffe://test/ns/default/worker/n2', T0 + 10_000), true, 'issued at the revocation');
      assert.equal(await store.isRevoked('cd04', 'spiffe://test/ns/default/worker/n2', T0 + 11_000), false, 'issued after it');
      const listed = await store.listRevocations();
      assert.deepEqual(
        listed.map((revocation) => revocation.id),
        [bySerial.id, byId.id],
      );
      assert.ok(byId.id > bySerial.id);
    });
  });
}
