// The Store contract, role by role: every adapter (PostgreSQL, PGlite) must pass this same suite.
// One migrated store serves every role's suite; each suite uses its own names.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import type { Store } from '../../src/store/store.js';
import { apiKeysContract } from './contracts/api-keys.contract.js';
import { auditContract } from './contracts/audit.contract.js';
import { dutiesContract } from './contracts/duties.contract.js';
import { heartbeatsContract } from './contracts/heartbeats.contract.js';
import { identityContract } from './contracts/identity.contract.js';
import { nodesContract } from './contracts/nodes.contract.js';
import { policyContract } from './contracts/policy.contract.js';
import { profilesContract } from './contracts/profiles.contract.js';

export interface StoreFixture {
  store: Store;
  dispose(): Promise<void>;
}

export function storeContract(name: string, open: () => Promise<StoreFixture>): void {
  describe(`Store contract: ${name}`, () => {
    let fixture: StoreFixture;
    let store: Store;
    before(async () => {
      fixture = await open();
      store = fixture.store;
      await store.migrate();
    });
    after(async () => {
      await fixture.dispose();
    });

    it('migrates idempotently', async () => {
      await store.migrate();
      assert.equal(await store.currentVersion(), 0);
    });

    it('answers a ping with its dialect', async () => {
      await store.ping();
      assert.equal(store.dialect, name);
    });

    const get = (): Store => store;
    nodesContract(get);
    heartbeatsContract(get);
    profilesContract(get);
    dutiesContract(get);
    identityContract(get);
    policyContract(get);
    auditContract(get);
    apiKeysContract(get);
  });
}
