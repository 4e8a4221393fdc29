// The Consul sink in degraded (projection) mode, against a recording Consul agent of our own that
// can answer, fail (500), hang or be unreachable, and against a second rollcall instance's
// Consul-compatible API: nodes appear, renew (coalesced), disappear; the breaker opens, half-opens
// and closes; the reconciler converges after an outage.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { FakeConsul } from '../support/fake-consul.js';
import { waitFor } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function register(url: string, body: Record<string, unknown>): Promise<void> {
  const response = await json(`${url}/api/v1/nodes/register`, { body: { hostname: 'host-a', role: 'worker', ...body } });
  assert.ok(response.status === 200 || response.status === 201, JSON.stringify(response.body));
}

async function heartbeat(url: string, nodeId: string): Promise<void> {
  const response = await json(`${url}/api/v1/nodes/heartbeat`, { body: { node_id: nodeId } });
  assert.equal(response.status, 200, JSON.stringify(response.body));
}

async function metric(url: string, pattern: RegExp): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = pattern.exec(text);
  return match ? Number(match[1]) : undefined;
}

interface ConsulHealth {
  status: string;
  active: boolean;
  circuit_breaker: string;
  last_error: string | null;
  last_consul_failure: string | null;
  pending_reconciliation: boolean;
}

async function consulHealth(url: string): Promise<{ status: string; consul: ConsulHealth }> {
  const health = await json<{ status: string; checks: { consul: ConsulHealth } }>(`${url}/health`);
  return { status: health.body.status, consul: health.body.checks.consul };
}

const BREAKER_STATE = /rollcall_circuit_breaker_state\{backend="consul"\} (\d+)/;

describe('consul sink against a recording consul', () => {
  const consul = new FakeConsul();
  let t: TestServer;
  before(async () => {
    await consul.listen();
    t = await startTestServer({
      config: {
        consulAddr: `127.0.0.1:${consul.port}`,
        consulToken: 'acl-secret',
        consulServiceName: 'svc-{node_type}',
        consulReconcileIntervalMs: 60_000,
        consulRenewIntervalMs: 100,
        consulTimeoutMs: 300,
        consulRetries: 0,
        consulBreakerResetMs: 1500,
        sweepIntervalMs: 100,
      },
    });
  });
  after(async () => {
    await t.close();
    await consul.close();
  });

  it("registers online nodes with Consul's documented field names and the ACL token", async () => {
    await register(t.url, {
      node_id: 'worker-1',
      node_type: 'ai_worker',
      node_version: '1.2.3',
      labels: ['gpu', 'zone-a'],
      lease_ttl_seconds: 3,
      capabilities: { inference: true, models: ['llama', 'qwen'] },
      endpoints: { api: 'http://10.0.0.5:8080', health: 'http://10.0.0.5:8080/health' },
      metadata: { environment: 'staging' },
    });
    await waitFor('worker-1 in consul', async () => consul.services.get('worker-1'));
    const [body] = consul.registrationsOf('worker-1');
    assert.ok(body);
    assert.deepEqual(Object.keys(body).sort(), ['Address', 'Check', 'ID', 'Meta', 'Name', 'Port', 'Tags']);
    assert.equal(body.Name, 'svc-ai-worker');
    assert.equal(body.ID, 'worker-1');
    assert.equal(body.Address, '10.0.0.5');
    assert.equal(body.Port, 8080);
    assert.deepEqual(body.Tags, ['gpu', 'zone-a', 'rollcall']);
    assert.deepEqual(body.Meta, {
      managed_by: 'rollcall',
      node_type: 'ai_worker',
      node_version: '1.2.3',
      namespace: 'default',
      environment: 'staging',
      capabilities: 'inference,llama,qwen',
      role: 'worker',
    });
    assert.deepEqual(body.Check, { CheckID: 'service:worker-1', Name: 'rollcall lease of worker-1', TTL: '3s', Status: 'passing', DeregisterCriticalServiceAfter: '90s' });
    assert.ok(consul.requests.every((r) => r.token === 'acl-secret'));
    // The registry registers itself too.
    assert.ok([...consul.services.values()].some((s) => s.Service === 'svc-registry'));
  });

  it('coalesces heartbeats into at most one TTL pass per node per TTL/3', async () => {
    // TTL 3 s: TTL/3 = 1 s. Twenty heartbeats in about half a second become one pass, or two when
    // the burst outlasts the first pass's window (a trailing pass carries its last heartbeats).
    const passTimes = (): number[] => consul.requests.filter((r) => r.method === 'PUT' && decodeURIComponent(r.pathname) === '/v1/agent/check/pass/service:worker-1').map((r) => r.at);
    const passesBefore = passTimes().length;
    const burstStarted = Date.now();
    for (let i = 0; i < 20; i++) {
      await heartbeat(t.url, 'worker-1');
      await sleep(25);
    }
    const burstMs = Date.now() - burstStarted;
    await waitFor('a pass', async () => (passTimes().length > passesBefore ? true : undefined), 3000);
    await sleep(1200);
    // About half a second on a quiet machine; a loaded one stretches the burst, and each further
    // second of it may carry one more pass.
    const burstPasses = passTimes().length - passesBefore;
    assert.ok(burstPasses >= 1 && burstPasses <= 2 + Math.floor(burstMs / 1000), `${burstPasses} passes for 20 heartbeats over ${burstMs} ms`);
    // A steady stream for 2.5 s (a heartbeat every 50 ms) is renewed about once a second, never more.
    const before = consul.passes.get('service:worker-1') ?? 0;
    const started = Date.now();
    let beats = 0;
    while (Date.now() - started < 2500) {
      await heartbeat(t.url, 'worker-1');
      beats++;
      await sleep(50);
    }
    await sleep(300);
    const streamMs = Date.now() - started;
    const passes = (consul.passes.get('service:worker-1') ?? 0) - before;
    assert.ok(beats >= 10, `sent ${beats} heartbeats`);
    assert.ok(passes >= 2 && passes <= 1 + Math.ceil(streamMs / 1000), `${passes} passes for ${beats} heartbeats over ${streamMs} ms`);
    // Never two passes within TTL/3 (less the few ms between a round's start and its request).
    const times = passTimes();
    const gaps = times.slice(1).map((at, i) => at - (times[i] as number));
    assert.ok(
      gaps.every((gap) => gap >= 900),
      `gaps between passes: ${gaps.join(', ')} ms`,
    );
  });

  it('deregisters on tombstone and on lease expiry', async () => {
    await register(t.url, { node_id: 'short-lived', node_type: 'tool', lease_ttl_seconds: 1, endpoints: { api: 'http://10.0.0.6:9000' } });
    await register(t.url, { node_id: 'leaving', node_type: 'tool', lease_ttl_seconds: 60, ip: '10.0.0.7' });
    await waitFor('both in consul', async () => (consul.services.has('short-lived') && consul.services.has('leaving') ? true : undefined));
    assert.equal(consul.services.get('leaving')?.Address, '10.0.0.7');
    const removed = await json(`${t.url}/api/v1/nodes/leaving`, { method: 'DELETE' });
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    await waitFor('tombstone deregistered', async () => (consul.services.has('leaving') ? undefined : true));
    assert.equal(consul.deregistrationsOf('leaving'), 1);
    // No heartbeats: the lease lapses, the sweeper takes it offline, the sink deregisters it.
    await waitFor('expired node deregistered', async () => (consul.services.has('short-lived') ? undefined : true), 8000);
    const node = await json<{ status: string }>(`${t.url}/api/v1/nodes/short-lived`);
    assert.equal(node.body.status, 'offline');
  });

  it('opens the breaker after 5 consecutive failures, fails fast, half-opens and closes after 2 successes', async () => {
    consul.mode = 'error';
    const before = consul.requests.length;
    await register(t.url, { node_id: 'during-500', node_type: 'tool', ip: '10.0.1.1' });
    await waitFor('breaker open', async () => ((await metric(t.url, BREAKER_STATE)) === 2 ? true : undefined), 5000);
    const failed = consul.requests.length - before;
    assert.ok(failed >= 5, `${failed} requests before opening`);
    const health = await consulHealth(t.url);
    assert.equal(health.status, 'degraded');
    assert.equal(health.consul.circuit_breaker, 'open');
    assert.equal(health.consul.pending_reconciliation, true);
    assert.match(health.consul.last_consul_failure ?? '', /500/);
    // Open: nothing reaches Consul, while rollcall keeps registering on PostgreSQL alone.
    const atOpen = consul.requests.length;
    await register(t.url, { node_id: 'while-open', node_type: 'tool', ip: '10.0.1.2' });
    await sleep(800);
    assert.equal(consul.requests.length, atOpen);
    assert.equal((await json<{ status: string }>(`${t.url}/api/v1/nodes/while-open`)).body.status, 'online');
    consul.mode = 'ok';
    await waitFor('breaker closed', async () => ((await metric(t.url, BREAKER_STATE)) === 0 ? true : undefined), 5000);
    assert.equal(await metric(t.url, /rollcall_circuit_breaker_transitions_total\{backend="consul",state="half-open"\} (\d+)/), 1);
    assert.equal(await metric(t.url, /rollcall_circuit_breaker_transitions_total\{backend="consul",state="closed"\} (\d+)/), 1);
    assert.ok(((await metric(t.url, /rollcall_circuit_breaker_calls_total\{backend="consul",outcome="failure"\} (\d+)/)) ?? 0) >= 5);
    await waitFor('registered after recovery', async () => (consul.services.has('during-500') && consul.services.has('while-open') ? true : undefined));
    await waitFor('healthy again', async () => ((await consulHealth(t.url)).consul.status === 'healthy' ? true : undefined));
  });

  it('converges after Consul was unreachable: adds missing, removes stale, fixes drifted', async () => {
    await register(t.url, { node_id: 'stays', node_type: 'tool', ip: '10.0.2.1', labels: ['blue'] });
    await register(t.url, { node_id: 'goes', node_type: 'tool', ip: '10.0.2.2' });
    await waitFor('both in consul', async () => (consul.services.has('stays') && consul.services.has('goes') ? true : undefined));
    await consul.close();
    // Consul down: rollcall goes on with PostgreSQL alone.
    await register(t.url, { node_id: 'new-1', node_type: 'tool', ip: '10.0.2.3' });
    await register(t.url, { node_id: 'new-2', node_type: 'tool', ip: '10.0.2.4' });
    assert.equal((await json(`${t.url}/api/v1/nodes/goes`, { method: 'DELETE' })).status, 200);
    await waitFor('breaker open', async () => ((await metric(t.url, BREAKER_STATE)) === 2 ? true : undefined), 5000);
    // Meanwhile Consul's state drifts: someone edits a service, a stale rollcall service lingers,
    // and a service rollcall does not manage must survive.
    const stays = consul.services.get('stays');
    assert.ok(stays);
    consul.services.set('stays', { ...stays, Tags: ['green'], Port: 1234 });
    consul.services.set('ghost', { ID: 'ghost', Service: 'tool', Tags: ['rollcall'], Meta: { managed_by: 'rollcall' }, Address: '10.9.9.9', Port: 1 });
    consul.services.set('foreign', { ID: 'foreign', Service: 'db', Tags: ['rollcall'], Meta: {}, Address: '10.9.9.8', Port: 5432 });
    await consul.listen();
    await waitFor(
      'converged',
      async () => {
        const s = consul.services;
        const fixed = s.get('stays');
        return s.has('new-1') && s.has('new-2') && !s.has('goes') && !s.has('ghost') && fixed?.Port === 0 && fixed.Tags.join() === 'blue,rollcall' ? true : undefined;
      },
      8000,
    );
    assert.ok(consul.services.has('foreign'));
    assert.equal(await metric(t.url, BREAKER_STATE), 0);
    assert.ok(((await metric(t.url, /rollcall_consul_reconcile_actions_total\{action="removed"\} (\d+)/)) ?? 0) >= 2);
    assert.ok(((await metric(t.url, /rollcall_consul_reconcile_actions_total\{action="added"\} (\d+)/)) ?? 0) >= 2);
    assert.ok(((await metric(t.url, /rollcall_consul_reconcile_actions_total\{action="fixed"\} (\d+)/)) ?? 0) >= 1);
    await waitFor('nothing pending', async () => ((await consulHealth(t.url)).consul.pending_reconciliation ? undefined : true));
  });

  it('treats a hanging Consul as failing (timeouts) and recovers', async () => {
    consul.mode = 'hang';
    await register(t.url, { node_id: 'during-hang', node_type: 'tool', ip: '10.0.3.1' });
    await waitFor('breaker open on timeouts', async () => ((await metric(t.url, BREAKER_STATE)) === 2 ? true : undefined), 8000);
    assert.match((await consulHealth(t.url)).consul.last_consul_failure ?? '', /timed out/);
    consul.mode = 'ok';
    await waitFor('registered after recovery', async () => (consul.services.has('during-hang') ? true : undefined), 8000);
    assert.equal(await metric(t.url, BREAKER_STATE), 0);
  });
});

describe("consul sink against a second rollcall instance's Consul-compatible API", () => {
  let target: TestServer;
  let source: TestServer;
  before(async () => {
    target = await startTestServer({ config: { sweepIntervalMs: 100 } });
    source = await startTestServer({ config: { consulAddr: target.url, consulRenewIntervalMs: 100, consulReconcileIntervalMs: 2000, sweepIntervalMs: 100 } });
  });
  after(async () => {
    await source.close();
    await target.close();
  });

  interface AgentService {
    ID: string;
    Service: string;
    Tags: string[];
    Meta: Record<string, string>;
    Address: string;
    Port: number;
  }

  const agentServices = async (): Promise<Record<string, AgentService>> => (await json<Record<string, AgentService>>(`${target.url}/v1/agent/services`)).body;

  it('makes nodes registered in the first appear, renew and disappear in the second', async () => {
    await register(source.url, { node_id: 'mirrored', node_type: 'orchestrator', node_version: '2.0.0', labels: ['edge'], lease_ttl_seconds: 3, endpoints: { api: 'http://10.1.0.1:7000' } });
    const service = await waitFor('mirrored in the second instance', async () => (await agentServices()).mirrored);
    assert.equal(service.Service, 'orchestrator');
    assert.equal(service.Address, '10.1.0.1');
    assert.equal(service.Port, 7000);
    assert.ok(service.Tags.includes('edge') && service.Tags.includes('rollcall'));
    assert.equal(service.Meta.node_version, '2.0.0');
    // The first instance's own service is there too, and the second instance's own node is left alone.
    const all = await agentServices();
    assert.ok(all[source.server.registryId]);
    assert.ok(all[target.server.registryId]);

    // Heartbeats in the first keep the service alive in the second past its 3 s TTL.
    const started = Date.now();
    while (Date.now() - started < 4500) {
      await heartbeat(source.url, 'mirrored');
      await sleep(200);
    }
    const healthy = await json<unknown[]>(`${target.url}/v1/health/service/orchestrator?passing`);
    assert.equal(healthy.status, 200);
    assert.equal(healthy.body.length, 1);

    // A tombstone in the first removes it from the second.
    assert.equal((await json(`${source.url}/api/v1/nodes/mirrored`, { method: 'DELETE' })).status, 200);
    await waitFor('gone from the second instance', async () => ((await agentServices()).mirrored ? undefined : true));
    assert.ok((await agentServices())[target.server.registryId], 'the reconciler left the unmanaged service alone');
  });
});
