// The Consul-compatible API exercised by the real `consul` npm client (and raw HTTP where the client
// hides what matters): agent register/check/deregister, catalog and health reads, blocking queries.
import { strict as assert } from 'node:assert';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Consul from 'consul';
import { pollUntil } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

let t: TestServer;
let consul: Consul;

before(async () => {
  t = await startTestServer({ config: { sweepIntervalMs: 100, heartbeatFlushMs: 100 } });
  const url = new URL(t.url);
  consul = new Consul({ host: url.hostname, port: Number(url.port), defaults: { token: 'not-checked-yet' } });
});
after(async () => {
  consul.destroy();
  await t.close();
});

interface HealthEntry {
  Node: { Node: string; Address: string };
  Service: { ID: string; Service: string; Tags: string[]; Meta: Record<string, string>; Port: number; Address: string };
  Checks: Array<{ CheckID: string; Status: string; ServiceID: string; Output: string }>;
}

async function health(service: string, query = ''): Promise<{ status: number; index: number; body: HealthEntry[] }> {
  const response = await fetch(`${t.url}/v1/health/service/${service}${query}`);
  return { status: response.status, index: Number(response.headers.get('x-consul-index')), body: (await response.json()) as HealthEntry[] };
}

function serviceStatus(entry: HealthEntry | undefined): string | undefined {
  return entry?.Checks.find((check) => check.ServiceID !== '')?.Status;
}

function until<T>(what: string, read: () => Promise<T>, ok: (value: T) => boolean): Promise<T> {
  return pollUntil(read, ok, { timeoutMs: 8000, intervalMs: 50, what });
}

/** Every record and the topology version: what a refused request must leave alone. */
async function snapshot(): Promise<unknown> {
  return (await json(`${t.url}/api/v1/nodes?limit=1000&namespace=*&status=online,offline,removed`)).body;
}

/** A PUT whose body carries no Content-Type at all, as some Consul clients send it. */
function putWithoutContentType(path: string, body: string): Promise<{ status: number; body: string }> {
  const url = new URL(path, t.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'PUT', headers: { 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('the consul client against rollcall', () => {
  it('registers a service with a TTL check, passes it, and reads it back through health, catalog and agent', async () => {
    await consul.agent.service.register({
      name: 'web',
      id: 'web-1',
      tags: ['primary', 'v1', 'has space'],
      address: '10.0.0.5',
      port: 8080,
      meta: { env: 'test', version: '1.4.0' },
      check: { ttl: '30s', notes: 'renewed by the app' },
    });
    // A TTL check starts critical until its first pass, as in Consul.
    let entries = (await health('web')).body;
    assert.equal(serviceStatus(entries[0]), 'critical');
    assert.deepEqual((await health('web', '?passing')).body, []);

    await consul.agent.check.pass({ id: 'service:web-1', note: 'all good' });
    const passing = await health('web', '?passing');
    assert.equal(passing.status, 200);
    assert.ok(passing.index > 0);
    entries = passing.body;
    assert.equal(entries.length, 1);
    const [entry] = entries as [HealthEntry];
    assert.equal(entry.Service.ID, 'web-1');
    assert.equal(entry.Service.Service, 'web');
    assert.deepEqual(entry.Service.Tags, ['primary', 'v1', 'has space']);
    assert.deepEqual(entry.Service.Meta, { env: 'test', version: '1.4.0' });
    assert.equal(entry.Service.Address, '10.0.0.5');
    assert.equal(entry.Service.Port, 8080);
    const check = entry.Checks.find((item) => item.CheckID === 'service:web-1');
    assert.equal(check?.Status, 'passing');
    assert.equal(check?.Output, 'all good');
    assert.ok(entry.Checks.some((item) => item.CheckID === 'serfHealth'));

    const viaClient = (await consul.health.service({ service: 'web', passing: true })) as HealthEntry[];
    assert.equal(viaClient.length, 1);

    const catalog = await consul.catalog.service.nodes('web');
    assert.equal(catalog.length, 1);
    assert.equal(catalog[0]?.ServiceID, 'web-1');
    assert.equal(catalog[0]?.ServiceName, 'web');
    assert.equal(catalog[0]?.ServiceAddress, '10.0.0.5');
    assert.equal(catalog[0]?.ServicePort, 8080);
    assert.deepEqual(catalog[0]?.ServiceTags, ['primary', 'v1', 'has space']);
    assert.deepEqual(catalog[0]?.ServiceMeta, { env: 'test', version: '1.4.0' });
    assert.equal(typeof catalog[0]?.Node, 'string');

    const services = await consul.catalog.service.list();
    assert.deepEqual(services.web, ['primary', 'v1', 'has space']);
    const agent = await consul.agent.service.list();
    assert.equal(agent['web-1']?.Service, 'web');
    assert.equal(agent['web-1']?.Port, 8080);

    // An ordinary rollcall node: TTL as lease, valid tags as labels, the Consul definition in metadata.
    const node = await json<Record<string, unknown>>(`${t.url}/api/v1/nodes/web-1`);
    assert.equal(node.status, 200);
    assert.equal(node.body.node_type, 'web');
    assert.equal(node.body.lease_ttl_ms, 30_000);
    assert.equal(node.body.health_status, 'healthy');
    assert.equal(node.body.node_version, '1.4.0');
    assert.deepEqual(node.body.labels, ['primary', 'v1']);
    const consulMeta = (node.body.metadata as { consul: { service: string; tags: string[] } }).consul;
    assert.equal(consulMeta.service, 'web');
    assert.deepEqual(consulMeta.tags, ['primary', 'v1', 'has space']);
  });

  it('answers a blocking query when a second service registers', async () => {
    const first = await health('web');
    const watch = consul.watch({ method: consul.health.service, options: { service: 'web', wait: '5s' }, backoffFactor: 50 });
    const seen: HealthEntry[][] = [];
    const errors: unknown[] = [];
    watch.on('change', (data: HealthEntry[]) => seen.push(data));
    watch.on('error', (error: unknown) => errors.push(error));
    try {
      await until(
        'the first watch answer',
        async () => seen.length,
        (count) => count >= 1,
      );
      assert.equal(seen[0]?.length, first.body.length);

      // A raw blocking query on the same index hangs until the registration below.
      const started = Date.now();
      const blocked = health('web', `?index=${first.index}&wait=30s`);
      await sleep(200);
      await consul.agent.service.register({ name: 'web', id: 'web-2', address: '10.0.0.6', port: 8080, check: { ttl: '30s', status: 'passing' } });
      const woken = await blocked;
      assert.ok(woken.index > first.index);
      assert.ok(Date.now() - started < 15_000, 'the blocking query returned on the change, not at the end of its wait');
      assert.deepEqual(woken.body.map((entry) => entry.Service.ID).sort(), ['web-1', 'web-2']);

      const latest = await until(
        'the watch to see web-2',
        async () => seen[seen.length - 1] ?? [],
        (data) => data.length === 2,
      );
      assert.deepEqual(latest.map((entry) => entry.Service.ID).sort(), ['web-1', 'web-2']);
      assert.deepEqual(errors, []);
    } finally {
      watch.end();
    }
  });

  it('ends a blocking query at its wait when nothing changes, with the same index', async () => {
    const now = await health('web');
    const started = Date.now();
    const again = await health('web', `?index=${now.index}&wait=300ms`);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 280 && elapsed < 3000, `returned after ${elapsed} ms`);
    assert.equal(again.index, now.index);
    // Index 0 and an index ahead of the registry never block.
    assert.equal((await health('web', '?index=0&wait=5s')).index, now.index);
    assert.equal((await health('web', `?index=${now.index + 1000}&wait=5s`)).index, now.index);
  });

  it('deregisters: gone from the catalog, removed in rollcall', async () => {
    await consul.agent.service.deregister('web-2');
    const catalog = await consul.catalog.service.nodes('web');
    assert.deepEqual(
      catalog.map((entry) => entry.ServiceID),
      ['web-1'],
    );
    const node = await json<Record<string, unknown>>(`${t.url}/api/v1/nodes/web-2`);
    assert.equal(node.body.status, 'removed');
    assert.equal(node.body.removal_reason, 'manual_deregistration');
    assert.equal((await consul.agent.service.list())['web-2'], undefined);
  });
});

describe('health semantics', () => {
  it('warn and fail change the Status; pass restores it', async () => {
    await consul.agent.check.warn('service:web-1');
    assert.equal(serviceStatus((await health('web')).body.find((entry) => entry.Service.ID === 'web-1')), 'warning');
    assert.equal((await json<Record<string, unknown>>(`${t.url}/api/v1/nodes/web-1`)).body.health_status, 'degraded');
    await consul.agent.check.fail('service:web-1');
    assert.equal(serviceStatus((await health('web')).body.find((entry) => entry.Service.ID === 'web-1')), 'critical');
    assert.deepEqual((await health('web', '?passing=true')).body, []);
    await consul.agent.check.pass('service:web-1');
    assert.equal((await health('web', '?passing=1')).body.length, 1);
  });

  it("shows a node registered through rollcall's own API as a service of its node_type", async () => {
    const registered = await json(`${t.url}/api/v1/nodes/register`, {
      body: { node_id: 'gpu-1', hostname: 'gpu-host-1', ip: '10.1.0.7', role: 'worker', node_type: 'inference', labels: ['gpu', 'zone-a'], endpoints: { api: 'http://10.1.0.7:9000' } },
    });
    assert.equal(registered.status, 201);
    const catalog = await consul.catalog.service.nodes('inference');
    assert.equal(catalog.length, 1);
    assert.equal(catalog[0]?.ServiceID, 'gpu-1');
    assert.equal(catalog[0]?.ServiceName, 'inference');
    assert.equal(catalog[0]?.ServiceAddress, '10.1.0.7');
    assert.equal(catalog[0]?.ServicePort, 9000);
    assert.equal(catalog[0]?.Node, 'gpu-host-1');
    assert.deepEqual(catalog[0]?.ServiceTags, ['gpu', 'zone-a']);
    const entries = (await health('inference', '?passing')).body;
    assert.equal(entries.length, 1);
    assert.equal(entries[0]?.Service.Meta.role, 'worker');

    await json(`${t.url}/api/v1/nodes/heartbeat`, { body: { node_id: 'gpu-1', health_status: 'degraded' } });
    assert.equal(serviceStatus((await health('inference')).body[0]), 'warning');
    // Consul's check endpoints reach rollcall nodes too.
    await consul.agent.check.pass('service:gpu-1');
    assert.equal(serviceStatus((await health('inference')).body[0]), 'passing');
    assert.ok((await consul.catalog.service.list()).inference);
  });

  it('a missed TTL takes the node offline: critical; a pass brings it back', async () => {
    await consul.agent.service.register({ name: 'short', id: 'short-1', port: 7000, check: { ttl: '1s' } });
    await consul.agent.check.pass('service:short-1');
    assert.equal(serviceStatus((await health('short')).body[0]), 'passing');
    const expired = await until(
      'the TTL to lapse',
      () => health('short'),
      (answer) => serviceStatus(answer.body[0]) === 'critical',
    );
    assert.equal(expired.body.length, 1, 'an expired service stays in the catalog, critical');
    assert.equal((await json<Record<string, unknown>>(`${t.url}/api/v1/nodes/short-1`)).body.status, 'offline');
    await consul.agent.check.pass('service:short-1');
    assert.equal(serviceStatus((await health('short')).body[0]), 'passing');
    assert.equal((await json<Record<string, unknown>>(`${t.url}/api/v1/nodes/short-1`)).body.status, 'online');
    await consul.agent.service.deregister('short-1');
  });
});

describe('query parameters', () => {
  before(async () => {
    await consul.agent.service.register({ name: 'api', id: 'api-1', tags: ['blue'], meta: { env: 'prod' }, port: 1, check: { ttl: '60s', status: 'passing' } });
    await consul.agent.service.register({ name: 'api', id: 'api-2', tags: ['green'], meta: { env: 'dev' }, port: 2, check: { ttl: '60s', status: 'passing' } });
  });

  it('filters by tag and by the supported filter subset', async () => {
    assert.deepEqual(
      (await health('api', '?tag=blue')).body.map((entry) => entry.Service.ID),
      ['api-1'],
    );
    const ids = async (filter: string): Promise<string[]> => (await health('api', `?filter=${encodeURIComponent(filter)}`)).body.map((entry) => entry.Service.ID).sort();
    assert.deepEqual(await ids('Service.Tags contains "green"'), ['api-2']);
    assert.deepEqual(await ids('"blue" in Service.Tags'), ['api-1']);
    assert.deepEqual(await ids('Service.Meta.env == "prod"'), ['api-1']);
    assert.deepEqual(await ids('Service.Meta.env != "prod"'), ['api-2']);
    assert.deepEqual(await ids('Service.Port == 2 or (Service.ID == `api-1` and not Service.Tags is empty)'), ['api-1', 'api-2']);
    const catalog = await consul.catalog.service.nodes({ service: 'api', filter: 'ServiceMeta.env == "dev"' });
    assert.deepEqual(
      catalog.map((entry) => entry.ServiceID),
      ['api-2'],
    );
    const agent = await consul.agent.service.list({ filter: 'Meta.env == "prod"' });
    assert.deepEqual(Object.keys(agent), ['api-1']);
  });

  it('refuses filters outside the subset with a problem document', async () => {
    for (const filter of ['Service.Tags matches "x.*"', 'Nope.Field == "x"', 'Service.Meta.env == ', '(Service.ID == "a"']) {
      const response = await json<{ code: string; status: number }>(`${t.url}/v1/health/service/api?filter=${encodeURIComponent(filter)}`);
      assert.equal(response.status, 400, filter);
      assert.match(response.contentType, /^application\/problem\+json/);
      assert.equal(response.body.code, 'VALIDATION_FAILED');
    }
    assert.equal((await json(`${t.url}/v1/health/service/api?wait=soon&index=1`)).status, 400);
  });

  it('accepts tokens in X-Consul-Token and ?token= and sets X-Consul-Index on every read', async () => {
    for (const path of ['/v1/agent/services?token=abc', '/v1/catalog/services', '/v1/catalog/service/api', '/v1/health/service/api', '/v1/health/service/none-such']) {
      const response = await fetch(`${t.url}${path}`, { headers: { 'x-consul-token': 'abc' } });
      assert.equal(response.status, 200, path);
      assert.match(response.headers.get('x-consul-index') ?? '', /^[1-9]\d*$/, path);
    }
    assert.deepEqual((await health('none-such')).body, []);
  });
});

describe('bodies and ids', () => {
  it("takes a definition without Content-Type, in Consul's capitalised keys", async () => {
    const body = JSON.stringify({ Name: 'cache', ID: 'cache-1', Tags: ['redis'], Port: 6379, Check: { TTL: '20s', Status: 'warning' } });
    const response = await putWithoutContentType('/v1/agent/service/register', body);
    assert.equal(response.status, 200, response.body);
    assert.equal(serviceStatus((await health('cache')).body[0]), 'warning');
    // A service without a TTL check is passing and held by the agent on the default lease.
    assert.equal((await putWithoutContentType('/v1/agent/service/register', JSON.stringify({ name: 'plain', port: 1 }))).status, 200);
    const plainHealth = (await health('plain', '?passing')).body;
    assert.equal(plainHealth.length, 1);
    // As in Consul, a service without checks shows only the node's serfHealth.
    assert.deepEqual(
      plainHealth[0]?.Checks.map((check) => check.CheckID),
      ['serfHealth'],
    );
    const plain = await json<Record<string, unknown>>(`${t.url}/api/v1/nodes/plain`);
    assert.equal(plain.body.node_type, 'plain');
    assert.equal(plain.body.lease_ttl_ms, 90_000);
    const pass = await putWithoutContentType('/v1/agent/check/pass/service:cache-1', '');
    assert.equal(pass.status, 200);
  });

  it('refuses bad bodies with a problem document and changes nothing', async () => {
    const before = await snapshot();
    const bad: Array<[string, unknown]> = [
      ['no name', { ID: 'x-1', Port: 1 }],
      ['bad name', { Name: 'has space' }],
      ['bad id', { Name: 'x', ID: '-x' }],
      ['port', { Name: 'x', Port: 70000 }],
      ['port type', { Name: 'x', Port: '80' }],
      ['tags', { Name: 'x', Tags: 'a,b' }],
      ['meta value', { Name: 'x', Meta: { k: 1 } }],
      ['check kind', { Name: 'x', Check: { Interval: '10s' } }],
      ['http without interval', { Name: 'x', Check: { HTTP: 'http://x/health' } }],
      ['ttl', { Name: 'x', Check: { TTL: 'ten seconds' } }],
      ['status', { Name: 'x', Check: { TTL: '10s', Status: 'fine' } }],
      ['array', [{ Name: 'x' }]],
    ];
    for (const [what, body] of bad) {
      const response = await json<{ code: string }>(`${t.url}/v1/agent/service/register`, { method: 'PUT', body });
      assert.equal(response.status, 400, what);
      assert.match(response.contentType, /^application\/problem\+json/, what);
      assert.equal(response.body.code, 'VALIDATION_FAILED', what);
    }
    const malformed = await json<{ code: string }>(`${t.url}/v1/agent/service/register`, { method: 'PUT', rawBody: '{"Name":' });
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.code, 'MALFORMED_JSON');
    const unknownCheck = await json<{ code: string }>(`${t.url}/v1/agent/check/pass/service:none-such`, { method: 'PUT' });
    assert.equal(unknownCheck.status, 404);
    assert.equal(unknownCheck.body.code, 'NODE_NOT_FOUND');
    const unknownService = await json<{ code: string }>(`${t.url}/v1/agent/service/deregister/none-such`, { method: 'PUT' });
    assert.equal(unknownService.status, 404);
    await assert.rejects(consul.agent.service.register({ name: 'x', check: { ttl: 'soon' } }), (error: Error & { statusCode?: number }) => error.statusCode === 400);
    assert.deepEqual(await snapshot(), before);
  });

  it('names checks of a multi-check service service:<id>:<n> and accepts a given CheckID', async () => {
    await consul.agent.service.register({
      name: 'multi',
      id: 'multi-1',
      // The second check is one rollcall does not run, so only the TTL updates below set the health.
      checks: [
        { ttl: '30s', status: 'passing' },
        { grpc: '127.0.0.1:1', interval: '10s' },
      ],
    });
    const checks = (await health('multi')).body[0]?.Checks.map((check) => check.CheckID);
    assert.deepEqual(checks, ['serfHealth', 'service:multi-1:1', 'service:multi-1:2']);
    await consul.agent.check.warn('service:multi-1:1');
    assert.equal(serviceStatus((await health('multi')).body[0]), 'warning');
    // The client drops a service check's id; Consul's own field is CheckID.
    assert.equal((await json(`${t.url}/v1/agent/service/register`, { method: 'PUT', body: { Name: 'named', ID: 'named-1', Check: { CheckID: 'named-ttl', TTL: '30s' } } })).status, 200);
    await consul.agent.check.pass('named-ttl');
    assert.equal(serviceStatus((await health('named')).body[0]), 'passing');
  });
});
