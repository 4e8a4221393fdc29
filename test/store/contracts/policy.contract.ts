// The policy role: numbered policy versions per namespace, and node quotas.
import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import type { PolicyStore } from '../../../src/store/store.js';
import { T0 } from './support.js';

export function policyContract(get: () => PolicyStore): void {
  describe('policy and quotas', () => {
    let store: PolicyStore;
    before(() => {
      store = get();
    });

    it('numbers the policy versions of each namespace from 1, and reads the latest or a given one', async () => {
      assert.equal(await store.getPolicy('pol-a'), null);
      const first = await store.savePolicy('pol-a', 'true', 'admin-1', T0);
      assert.deepEqual(first, { namespace: 'pol-a', version: 1, expression: 'true', created_by: 'admin-1', created_at: new Date(T0).toISOString() });
      await store.savePolicy('pol-a', "node.role == 'worker'", 'admin-2', T0 + 1000);
      assert.equal((await store.savePolicy('pol-b', 'false', 'admin-1', T0 + 2000)).version, 1, 'versions count per namespace');
      assert.equal((await store.getPolicy('pol-a'))?.version, 2);
      assert.equal((await store.getPolicy('pol-a', 1))?.expression, 'true');
      assert.equal(await store.getPolicy('pol-a', 3), null);
      assert.deepEqual(
        (await store.listPolicyVersions('pol-a')).map((policy) => policy.version),
        [2, 1],
      );
      const current = (await store.currentPolicies()).filter((policy) => policy.namespace.startsWith('pol-'));
      assert.deepEqual(current.map((policy) => [policy.namespace, policy.version]).sort(), [
        ['pol-a', 2],
        ['pol-b', 1],
      ]);
    });

    it('gives concurrent saves of one namespace distinct, consecutive versions', async () => {
      const saved = await Promise.all(Array.from({ length: 5 }, (_, i) => store.savePolicy('pol-race', `${i} == ${i}`, 'admin', T0)));
      assert.deepEqual(
        saved.map((policy) => policy.version).sort((a, b) => a - b),
        [1, 2, 3, 4, 5],
      );
    });

    it('puts, replaces and lists namespace quotas', async () => {
      assert.equal(await store.getQuotas('quota-a'), null);
      const put = await store.putQuotas({ namespace: 'quota-a', max_nodes: 10, max_nodes_per_type: { worker: 5 }, updated_by: 'admin-1' }, T0);
      assert.deepEqual(put, { namespace: 'quota-a', max_nodes: 10, max_nodes_per_type: { worker: 5 }, updated_by: 'admin-1', updated_at: new Date(T0).toISOString() });
      await store.putQuotas({ namespace: 'quota-a', max_nodes: null, max_nodes_per_type: {}, updated_by: 'admin-2' }, T0 + 1000);
      assert.deepEqual(await store.getQuotas('quota-a'), { namespace: 'quota-a', max_nodes: null, max_nodes_per_type: {}, updated_by: 'admin-2', updated_at: new Date(T0 + 1000).toISOString() });
      await store.putQuotas({ namespace: 'quota-b', max_nodes: 1, max_nodes_per_type: {}, updated_by: 'admin-1' }, T0);
      assert.deepEqual(
        (await store.listQuotas())
          .map((quotas) => quotas.namespace)
          .filter((namespace) => namespace.startsWith('quota-'))
          .sort(),
        ['quota-a', 'quota-b'],
      );
    });
  });
}
