// Quotas over several instances sharing one PostgreSQL database: each instance admits from its own
// live view, so the store counts again at commit, under a lock per namespace. A burst spread over
// two instances admits exactly the quota, in total and per node_type.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { pollUntil } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

interface Answer {
  status: number;
  body: { code?: string; details?: { quota?: string } };
}

describe('namespace quotas across two instances on one database', () => {
  let database: TestDatabase;
  let a: TestServer;
  let b: TestServer;

  before(async () => {
    database = await createTestDatabase();
    // Quotas saved through one instance reach the other within policyRefreshMs.
    a = await startTestServer({ database, config: { policyRefreshMs: 100 } });
    b = await startTestServer({ database, config: { policyRefreshMs: 100 } });
  });
  after(async () => {
    await a.stop();
    await b.stop();
    await database.drop();
  });

  const introspect = (server: TestServer, namespace: string, nodeId: string, nodeType: string): Promise<Answer> =>
    json(`${server.url}/api/v1/introspection`, { body: { namespace, node_id: nodeId, node_type: nodeType, node_version: '1.0.0', incarnation: 1 } });
  const setQuotas = async (namespace: string, quotas: Record<string, unknown>): Promise<void> => {
    assert.equal((await json(`${a.url}/api/v1/namespaces/${namespace}/quotas`, { method: 'PUT', body: quotas })).status, 200);
    // b has loaded them when it refuses a registration over them.
    await new Promise((resolve) => setTimeout(resolve, 400));
  };
  const denials = async (server: TestServer, namespace: string): Promise<number> => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const match = new RegExp(`^rollcall_quota_denials_total\\{namespace="${namespace}"\\} (\\d+)$`, 'm').exec(text);
    return match ? Number(match[1]) : 0;
  };
  /** What holds a place, read from the database itself: the instances' views follow it a little later. */
  const listed = async (namespace: string): Promise<Array<{ node_id: string; node_type: string }>> => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      return (await client.query<{ node_id: string; node_type: string }>("SELECT node_id, node_type FROM node_registrations WHERE namespace = $1 AND status <> 'removed'", [namespace])).rows;
    } finally {
      await client.end();
    }
  };

  it('admits exactly max_nodes of a burst spread over both instances', async () => {
    await setQuotas('shared-quota', { max_nodes: 5 });
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => introspect(i % 2 === 0 ? a : b, 'shared-quota', `n${i}`, 'compute')));
    assert.ok(
      answers.every((answer) => answer.status === 201 || answer.body.code === 'QUOTA_EXCEEDED'),
      JSON.stringify(answers.map((answer) => answer.status)),
    );
    const admitted = answers.flatMap((answer, i) => (answer.status === 201 ? [`n${i}`] : [])).sort();
    assert.equal(admitted.length, 5, `admitted ${admitted.join(' ')}`);
    assert.deepEqual((await listed('shared-quota')).map((node) => node.node_id).sort(), admitted);
    // Refused at commit or at admission, the answer is the same problem, and it is counted.
    const refused = answers.filter((answer) => answer.status !== 201);
    assert.ok(refused.every((answer) => answer.status === 403 && answer.body.details?.quota === 'max_nodes'));
    assert.equal((await denials(a, 'shared-quota')) + (await denials(b, 'shared-quota')), refused.length);
  });

  it('admits exactly max_nodes_per_type of a burst spread over both instances, other types unaffected', async () => {
    await setQuotas('shared-type-quota', { max_nodes_per_type: { effect: 3 } });
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => introspect(i % 2 === 0 ? a : b, 'shared-type-quota', `t${i}`, i % 3 === 0 ? 'compute' : 'effect')));
    assert.ok(
      answers.every((answer) => answer.status === 201 || answer.body.code === 'QUOTA_EXCEEDED'),
      JSON.stringify(answers.map((answer) => answer.status)),
    );
    const nodes = await listed('shared-type-quota');
    assert.equal(nodes.filter((node) => node.node_type === 'effect').length, 3);
    assert.equal(nodes.filter((node) => node.node_type === 'compute').length, 10);
  });

  it('gives a place back when a node leaves, on either instance', async () => {
    const before = (await listed('shared-quota')).map((node) => node.node_id).sort();
    assert.equal((await introspect(b, 'shared-quota', 'late', 'compute')).status, 403);
    assert.equal((await json(`${a.url}/api/v1/nodes/${before[0]}?namespace=shared-quota`, { method: 'DELETE' })).status, 200);
    // Once b's view has the removal, b admits again.
    await pollUntil(
      async () => (await json<{ status: string }>(`${b.url}/api/v1/nodes/${before[0]}?namespace=shared-quota`)).body.status,
      (status) => status === 'removed',
      { timeoutMs: 5000, what: 'b to see the removal' },
    );
    assert.equal((await introspect(b, 'shared-quota', 'late', 'compute')).status, 201);
    assert.equal((await listed('shared-quota')).length, 5);
  });
});
