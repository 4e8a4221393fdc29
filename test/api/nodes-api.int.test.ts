// The node endpoints over real HTTP on real PostgreSQL: the DAGI flow, introspection, queries.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { json, startTestServer, type TestServer } from '../support/server.js';

let t: TestServer;
before(async () => {
  t = await startTestServer();
});
after(async () => {
  await t.close();
});

describe('DAGI registration', () => {
  it('registers with a generated node_id, answers 201, and lists it', async () => {
    const registered = await json<{ node_id: string; outcome: string; topology_version: number }>(`${t.url}/api/v1/nodes/register`, {
      body: { hostname: 'test', ip: '192.168.1.1', role: 'test-node', labels: ['test'] },
    });
    assert.equal(registered.status, 201);
    assert.match(registered.body.node_id, /^node-/);
    assert.equal(registered.body.outcome, 'added');
    const got = await json<{ role: string; labels: string[]; status: string }>(`${t.url}/api/v1/nodes/${registered.body.node_id}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.role, 'test-node');
    assert.deepEqual(got.body.labels, ['test']);
    assert.equal(got.body.status, 'online');
  });
});
