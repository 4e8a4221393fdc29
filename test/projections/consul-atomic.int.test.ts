// Atomic Consul mode (the seeds' saga) against a recording Consul and a PostgreSQL the test can cut:
// Consul first, then PostgreSQL; a refusal by Consul writes nothing, a store failure is compensated
// in Consul, a failed compensation is repaired by the reconciler. No partial state survives.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { CuttableProxy } from '../support/cuttable-proxy.js';
import { FakeConsul, type Recorded } from '../support/fake-consul.js';
import { waitFor } from '../support/processes.js';
import { databaseOf, json, proxyOf, startTestServer, type TestServer } from '../support/server.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Problem {
  code?: string;
  outcome?: string;
  details?: { circuit_breaker?: string; consul_status?: number };
}

const BREAKER_STATE = /rollcall_circuit_breaker_state\{backend="consul"\} (\d+)/;

async function metric(url: string, pattern: RegExp): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = pattern.exec(text);
  return match ? Number(match[1]) : undefined;
}

const isRegisterOf = (request: Recorded, id: string): boolean => request.path === '/v1/agent/service/register' && (request.body as { ID?: string } | null)?.ID === id;

describe('consul atomic mode', () => {
  const consul = new FakeConsul();
  let proxy: CuttableProxy;
  let direct: pg.Client;
  let t: TestServer;

  before(async () => {
    await consul.listen();
    t = await startTestServer({
      storeProxy: true,
      config: {
        consulAddr: consul.url,
        consulMode: 'atomic',
        consulReconcileIntervalMs: 60_000,
        consulTimeoutMs: 300,
        consulRetries: 0,
        consulBreakerFailures: 3,
        consulBreakerResetMs: 1000,
        sweepIntervalMs: 30_000,
      },
    });
    proxy = proxyOf(t);
    direct = new pg.Client({ connectionString: databaseOf(t).url });
    await direct.connect();
  });
  after(async () => {
    consul.beforeAnswer = null;
    consul.mode = 'ok';
    await direct.end();
    await t.close();
    await consul.close();
  });

  const register = (body: Record<string, unknown>) => json<Problem>(`${t.url}/api/v1/nodes/register`, { body: { hostname: 'host-a', role: 'atomic', node_type: 'tool', ...body } });
  const stored = async (nodeId: string): Promise<{ status: string; ip: string | null } | undefined> =>
    (await direct.query<{ status: string; ip: string | null }>('SELECT status, ip FROM node_registrations WHERE node_id = $1', [nodeId])).rows[0];
  const live = async (nodeId: string): Promise<number> => (await json(`${t.url}/api/v1/nodes/${nodeId}`)).status;
  const health = () => json<{ checks: { store: { status: string }; writes: { status: string; last_error: { code: string } | null } } }>(`${t.url}/health`);

  it('writes Consul first, then PostgreSQL; a tombstone leaves Consul before the record is removed', async () => {
    const added = await register({ node_id: 'happy', ip: '10.0.0.1' });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    // Consul had it before the registration was acknowledged: no waiting.
    assert.equal(consul.services.get('happy')?.Address, '10.0.0.1');
    assert.equal((await stored('happy'))?.status, 'online');
    assert.equal(await live('happy'), 200);
    // The follow loop knows the saga sent it: no second registration of the same content.
    await sleep(500);
    assert.equal(consul.registrationsOf('happy').length, 1);

    let statusWhenConsulDeregistered: string | undefined;
    consul.beforeAnswer = async (request) => {
      if (request.path === '/v1/agent/service/deregister/happy') statusWhenConsulDeregistered = (await stored('happy'))?.status;
    };
    const removed = await json(`${t.url}/api/v1/nodes/happy`, { method: 'DELETE' });
    consul.beforeAnswer = null;
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    assert.equal(statusWhenConsulDeregistered, 'online');
    assert.equal((await stored('happy'))?.status, 'removed');
    assert.equal(consul.services.has('happy'), false);
    assert.deepEqual(consul.writesOf('happy'), ['register', 'deregister']);
  });

  it('refuses a registration Consul does not take (500, unreachable) and writes nothing; the breaker opens and refusals become immediate', async () => {
    consul.mode = 'error';
    for (let i = 1; i <= 3; i++) {
      const refused = await register({ node_id: `refused-${i}`, ip: '10.0.1.1' });
      assert.equal(refused.status, 503);
      assert.match(refused.contentType, /^application\/problem\+json/);
      assert.equal(refused.body.code, 'CONSUL_UNAVAILABLE');
      assert.equal(refused.body.details?.consul_status, 500);
      assert.equal(await stored(`refused-${i}`), undefined);
      assert.equal(await live(`refused-${i}`), 404);
    }
    assert.equal(await metric(t.url, BREAKER_STATE), 2);
    const seen = consul.requests.length;
    const fast = await register({ node_id: 'refused-open', ip: '10.0.1.2' });
    assert.equal(fast.status, 503);
    assert.equal(fast.body.code, 'CONSUL_UNAVAILABLE');
    assert.equal(fast.body.details?.circuit_breaker, 'open');
    assert.equal(consul.requests.length, seen, 'an open circuit sends nothing to Consul');
    assert.equal(await stored('refused-open'), undefined);
    // /health says writes fail, naming Consul, although the store itself answers.
    const failing = await health();
    assert.equal(failing.status, 503, JSON.stringify(failing.body.checks));
    assert.equal(failing.body.checks.store.status, 'healthy');
    assert.equal(failing.body.checks.writes.status, 'unhealthy');
    assert.equal(failing.body.checks.writes.last_error?.code, 'CONSUL_UNAVAILABLE');

    // Consul back: half-open trials get through and close the circuit.
    consul.mode = 'ok';
    const admitted = await waitFor(
      'a registration to be admitted again',
      async () => {
        const response = await register({ node_id: 'after-open', ip: '10.0.1.3' });
        return response.status === 201 ? response : undefined;
      },
      5000,
    );
    assert.equal(admitted.body.outcome, 'added');
    assert.equal((await health()).body.checks.writes.status, 'healthy');
    await waitFor('breaker closed', async () => ((await metric(t.url, BREAKER_STATE)) === 0 ? true : undefined), 5000);

    // Unreachable is refused the same way.
    await consul.close();
    const unreachable = await register({ node_id: 'refused-unreachable', ip: '10.0.1.4' });
    await consul.listen();
    assert.equal(unreachable.status, 503);
    assert.equal(unreachable.body.code, 'CONSUL_UNAVAILABLE');
    assert.equal(await stored('refused-unreachable'), undefined);
    assert.equal(await live('refused-unreachable'), 404);
  });

  it('compensates a new registration when PostgreSQL fails after Consul took it', async () => {
    consul.beforeAnswer = async (request) => {
      if (isRegisterOf(request, 'cut-add')) await proxy.cut();
    };
    const failed = await register({ node_id: 'cut-add', ip: '10.0.2.1' });
    consul.beforeAnswer = null;
    await proxy.listen();
    assert.equal(failed.status, 503, JSON.stringify(failed.body));
    assert.equal(failed.body.code, 'STORE_UNAVAILABLE');
    assert.deepEqual(consul.writesOf('cut-add'), ['register', 'deregister']);
    assert.equal(consul.services.has('cut-add'), false);
    assert.equal(await stored('cut-add'), undefined);
    assert.equal(await live('cut-add'), 404);
  });

  it('re-registers the previous version when PostgreSQL fails an update', async () => {
    assert.equal((await register({ node_id: 'cut-update', ip: '10.0.3.1' })).status, 201);
    consul.beforeAnswer = async (request) => {
      if (isRegisterOf(request, 'cut-update') && (request.body as { Address?: string }).Address === '10.0.3.2') await proxy.cut();
    };
    const failed = await register({ node_id: 'cut-update', ip: '10.0.3.2' });
    consul.beforeAnswer = null;
    await proxy.listen();
    assert.equal(failed.status, 503, JSON.stringify(failed.body));
    assert.equal(failed.body.code, 'STORE_UNAVAILABLE');
    assert.deepEqual(
      consul.registrationsOf('cut-update').map((body) => body.Address),
      ['10.0.3.1', '10.0.3.2', '10.0.3.1'],
    );
    assert.equal(consul.services.get('cut-update')?.Address, '10.0.3.1');
    assert.deepEqual(await stored('cut-update'), { status: 'online', ip: '10.0.3.1' });
    assert.equal((await json<{ ip: string }>(`${t.url}/api/v1/nodes/cut-update`)).body.ip, '10.0.3.1');
  });

  it('hands a compensation Consul refuses to the reconciler, which removes the orphan once Consul is back', async () => {
    consul.beforeAnswer = async (request) => {
      if (!isRegisterOf(request, 'orphan')) return;
      // Consul took the registration, then PostgreSQL and Consul both go away.
      await proxy.cut();
      consul.mode = 'error';
    };
    const failed = await register({ node_id: 'orphan', ip: '10.0.4.1' });
    consul.beforeAnswer = null;
    assert.equal(failed.status, 503, JSON.stringify(failed.body));
    assert.equal(failed.body.code, 'STORE_UNAVAILABLE');
    assert.deepEqual(consul.writesOf('orphan'), ['register', 'deregister']);
    assert.ok(consul.services.has('orphan'), 'the failed compensation left the service');
    assert.equal(await metric(t.url, /rollcall_consul_compensations_total\{outcome="failed"\} (\d+)/), 1);

    // PostgreSQL back first: the orphan stays while Consul keeps failing.
    await proxy.listen();
    assert.equal(await stored('orphan'), undefined);
    await sleep(1000);
    assert.ok(consul.services.has('orphan'));
    consul.mode = 'ok';
    await waitFor('the reconciler to remove the orphan', async () => (consul.services.has('orphan') ? undefined : true), 10_000);
    assert.equal(await stored('orphan'), undefined);
    assert.equal(await live('orphan'), 404);
    // What is online is there once the reconciler's pass is done: its repairs run side by side, so the
    // orphan can be gone before a service that a failed write of the registry's own record took away
    // (a heartbeat of its own falling into the outage, on a slow machine) is back.
    await waitFor('the online services in Consul', async () => (consul.services.has('cut-update') && consul.services.has(t.server.registryId) ? true : undefined), 10_000);
  });
});
