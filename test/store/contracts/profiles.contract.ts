// The profiles role: role configuration per namespace.
import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import type { ProfileStore } from '../../../src/store/store.js';
import { T0 } from './support.js';

export function profilesContract(get: () => ProfileStore): void {
  describe('profiles', () => {
    let store: ProfileStore;
    before(() => {
      store = get();
    });

    it('stores role profiles per namespace', async () => {
      assert.equal(await store.getProfile('default', 'router'), null);
      const put = await store.putProfile('default', 'router', { max_load: 10 }, T0);
      assert.deepEqual(put.config, { max_load: 10 });
      await store.putProfile('default', 'router', { max_load: 20 }, T0 + 1000);
      const got = await store.getProfile('default', 'router');
      assert.deepEqual(got?.config, { max_load: 20 });
      assert.equal(got?.created_at, new Date(T0).toISOString());
      assert.equal(got?.updated_at, new Date(T0 + 1000).toISOString());
      assert.equal(await store.getProfile('other', 'router'), null);
    });
  });
}
