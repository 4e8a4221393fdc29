// HTTP and TCP checks of services registered through the Consul-compatible API, run by rollcall as
// Consul's agent runs them, against real local HTTP and TCP servers; driven by the `consul` client.
import { strict as assert } from 'node:assert';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Consul from 'consul';
import { execute } from '../../src/api/consul/consul-checks.js';
import { pollUntil } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

interface HealthEntry {
  Service: { ID: string };
  Checks: Array<{ CheckID: string; Status: string; ServiceID: string; Output: string }>;
}

describe('Consul HTTP and TCP checks', () => {
  let t: TestServer;
  let consul: Consul;
  let target: Server;
  let targetUrl: string;
  let code = 200;
  let hits = 0;

  before(async () => {
    t = await startTestServer();
    const url = new URL(t.url);
    consul = new Consul({ host: url.hostname, port: Number(url.port) });
    target = createServer((_request, response) => {
      hits++;
      response.writeHead(code, { 'content-type': 'text/plain' });
      response.end(`status ${code}`);
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    targetUrl = `http://127.0.0.1:${(target.address() as AddressInfo).port}/health`;
  });
  after(async () => {
    consul.destroy();
    target.closeAllConnections();
    await new Promise((resolve) => target.close(resolve));
    await t.close();
  });

  const check = async (service: string, id: string): Promise<{ Status: string; Output: string } | undefined> => {
    const entries = (await json<HealthEntry[]>(`${t.url}/v1/health/service/${service}`)).body;
    return entries.find((entry) => entry.Service.ID === id)?.Checks.find((item) => item.ServiceID === id);
  };
  const checkBecomes = (service: string, id: string, status: string): Promise<{ Status: string; Output: string } | undefined> =>
    pollUntil(
      () => check(service, id),
      (found) => found?.Status === status,
      { timeoutMs: 10_000, what: `${id}'s check to be ${status}` },
    );
  const healthOf = async (id: string): Promise<string> => (await json<{ health_status: string }>(`${t.url}/api/v1/nodes/${id}`)).body.health_status;

  it('runs an HTTP check every interval: 2xx passes, 429 warns, 500 and no answer are critical', async () => {
    await consul.agent.service.register({ name: 'checked', id: 'checked-1', address: '127.0.0.1', port: 80, check: { http: targetUrl, interval: '1s', timeout: '1s' } });
    const passing = await checkBecomes('checked', 'checked-1', 'passing');
    assert.match(passing?.Output ?? '', /^HTTP GET http:\/\/127\.0\.0\.1:\d+\/health: 200 OK Output: status 200$/);
    assert.ok(hits >= 1);

    code = 500;
    const failing = await checkBecomes('checked', 'checked-1', 'critical');
    assert.match(failing?.Output ?? '', /: 500 Internal Server Error Output: status 500$/);
    assert.equal(await healthOf('checked-1'), 'unhealthy');
    // Only passing instances are served to ?passing.
    assert.deepEqual((await json<HealthEntry[]>(`${t.url}/v1/health/service/checked?passing`)).body, []);

    code = 429;
    await checkBecomes('checked', 'checked-1', 'warning');
    assert.equal(await healthOf('checked-1'), 'degraded');

    code = 200;
    await checkBecomes('checked', 'checked-1', 'passing');
    assert.equal(await healthOf('checked-1'), 'healthy');
  });

  it('stops checking a service once it is deregistered', async () => {
    await consul.agent.service.deregister('checked-1');
    await sleep(200); // a run already under way may still finish
    const seen = hits;
    await sleep(2500);
    assert.equal(hits, seen, 'no check ran after the deregistration');
    assert.equal((await json<{ status: string }>(`${t.url}/api/v1/nodes/checked-1`)).body.status, 'removed');
  });

  it('marks an HTTP check critical when nothing answers', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await consul.agent.service.register({ name: 'unanswered', id: 'unanswered-1', port: 80, check: { http: `http://127.0.0.1:${port}/`, interval: '1s', timeout: '1s' } });
    // It starts critical, as in Consul; the first run's output tells why it stays so.
    assert.equal((await check('unanswered', 'unanswered-1'))?.Status, 'critical');
    const critical = await pollUntil(
      () => check('unanswered', 'unanswered-1'),
      (found) => found?.Output.startsWith('Get ') === true,
      { timeoutMs: 10_000, what: 'the first run of the check' },
    );
    assert.equal(critical?.Status, 'critical');
    assert.match(critical?.Output ?? '', /^Get "http:\/\/127\.0\.0\.1:\d+\/": /);
    await consul.agent.service.deregister('unanswered-1');
  });

  it('runs a TCP check: a connection passes, a refused one is critical', async () => {
    const listener = createTcpServer((socket) => socket.end());
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(listener.address() as AddressInfo).port}`;
    await consul.agent.service.register({ name: 'tcp-checked', id: 'tcp-1', address: '127.0.0.1', port: 80, check: { tcp: address, interval: '1s', timeout: '1s' } });
    const passing = await checkBecomes('tcp-checked', 'tcp-1', 'passing');
    assert.equal(passing?.Output, `TCP connect ${address}: Success`);
    await new Promise((resolve) => listener.close(resolve));
    const critical = await checkBecomes('tcp-checked', 'tcp-1', 'critical');
    assert.match(critical?.Output ?? '', new RegExp(`^dial tcp ${address.replace(/\./g, '\\.')}: .*ECONNREFUSED`));
    await consul.agent.service.deregister('tcp-1');
  });

  it('gives up on an HTTP check at its Timeout, and on one in flight when the runner closes', async () => {
    const silent = createServer(() => undefined); // accepts, never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/`;
    try {
      const timedOut = await execute({ CheckID: 'c', Name: 'c', Type: 'http', HTTP: url, Timeout: '300ms' });
      assert.deepEqual(timedOut, { status: 'critical', output: `Get "${url}": timed out after 300 ms` });
      const closing = new AbortController();
      const pending = execute({ CheckID: 'c', Name: 'c', Type: 'http', HTTP: url, Timeout: '30s' }, closing.signal);
      setTimeout(() => closing.abort(), 100);
      const started = Date.now();
      assert.equal((await pending).status, 'critical');
      assert.ok(Date.now() - started < 20_000, 'not held for its 30 s timeout');
    } finally {
      silent.closeAllConnections();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
