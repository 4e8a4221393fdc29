// One address rule, seen from outside: a service registered through each door (DAGI register,
// introspection, the Consul-compatible agent API through the real `consul` client) resolves to the
// same host and port on every surface: DNS A and SRV (asked with `dig`), Prometheus HTTP SD (read by a
// real Prometheus), the Consul-compatible catalog and health answers, and the Consul sink's
// registration in a recording Consul.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import Consul from 'consul';
import { FakeConsul } from '../support/fake-consul.js';
import { pollUntil } from '../support/processes.js';
import { TestPrometheus } from '../support/prometheus.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

const run = promisify(execFile);
const POOL = 'rollcall';

let t: TestServer;
let consul: Consul;
let sink: FakeConsul;
let prometheus: TestPrometheus | null = null;
/** Answers the HTTP check of the Consul service whose check runs on another port than its service. */
let checkTarget: Server;
let checkUrl: string;

interface Door {
  /** node_id, and node_type (the service name) too. */
  id: string;
  register(): Promise<void>;
  /** Where every surface must say the service is. */
  expected: string;
}

async function ok(response: Promise<{ status: number; body: unknown }>): Promise<void> {
  const { status, body } = await response;
  assert.ok(status === 200 || status === 201, `${status} ${JSON.stringify(body)}`);
}

const doors: Door[] = [
  {
    id: 'dagi-api',
    register: () =>
      ok(
        json(`${t.url}/api/v1/nodes/register`, {
          body: {
            node_id: 'dagi-api',
            node_type: 'dagi-api',
            hostname: 'dagi-api.local',
            ip: '10.77.0.1',
            role: 'web',
            endpoints: { api: 'http://10.77.0.1:8101', health: 'http://10.77.0.1:8101/health' },
          },
        }),
      ),
    expected: '10.77.0.1:8101',
  },
  {
    // No URL: ip and a port field.
    id: 'dagi-port',
    register: () =>
      ok(json(`${t.url}/api/v1/nodes/register`, { body: { node_id: 'dagi-port', node_type: 'dagi-port', hostname: 'dagi-port.local', ip: '10.77.0.2', role: 'web', metadata: { port: 8102 } } })),
    expected: '10.77.0.2:8102',
  },
  {
    // The OmniNode shape: address in metadata, an endpoint bound to every interface.
    id: 'introspection',
    register: () =>
      ok(
        json(`${t.url}/api/v1/introspection`, {
          body: {
            node_id: 'introspection',
            node_type: 'introspection',
            node_version: '1.0.0',
            endpoints: { api: 'http://0.0.0.0:8103' },
            metadata: { hostname: 'introspection.local', ip: '10.77.0.3' },
            current_state: { health_status: 'healthy' },
          },
        }),
      ),
    expected: '10.77.0.3:8103',
  },
  {
    id: 'consul-ttl',
    register: () => consul.agent.service.register({ name: 'consul-ttl', id: 'consul-ttl', address: '10.77.0.4', port: 8104, check: { ttl: '300s', status: 'passing' } }),
    expected: '10.77.0.4:8104',
  },
  {
    // Its HTTP check runs on another port than the service: the service's Port is what is announced.
    id: 'consul-http',
    register: () => consul.agent.service.register({ name: 'consul-http', id: 'consul-http', address: '127.0.0.1', port: 8105, check: { http: checkUrl, interval: '10s', status: 'passing' } }),
    expected: '127.0.0.1:8105',
  },
];

interface Dig {
  status: string;
  answers: string[][];
  additional: string[][];
}

async function dig(name: string, type: 'A' | 'SRV'): Promise<Dig> {
  const port = String(t.server.dns?.port ?? 0);
  const { stdout } = await run('dig', ['@127.0.0.1', '-p', port, name, type, '+time=2', '+tries=1', '+nocookie']);
  const section = (title: string): string[][] => {
    const match = new RegExp(`;; ${title} SECTION:\\n([\\s\\S]*?)(?:\\n\\n|$)`).exec(stdout);
    return (match?.[1] ?? '')
      .split('\n')
      .filter((line) => line && !line.startsWith(';'))
      .map((line) => line.trim().split(/\s+/));
  };
  return { status: /status: ([A-Z]+)/.exec(stdout)?.[1] ?? 'NONE', answers: section('ANSWER'), additional: section('ADDITIONAL').filter((record) => record[3] !== 'OPT') };
}

/** `host:port` as each surface tells it; what a surface lacks reads as `none`. */
async function surfaces(id: string): Promise<Record<string, string>> {
  const a = await dig(`${id}.service.consul`, 'A');
  const srv = await dig(`${id}.service.consul`, 'SRV');
  // SRV: <name> <ttl> IN SRV <priority> <weight> <port> <target>, the target's address as glue.
  const srvRecord = srv.answers.find((record) => record[3] === 'SRV');
  const glue = srv.additional.find((record) => record[0] === srvRecord?.[7] && record[3] === 'A');
  const sd = (await prometheus?.activeTargets(POOL))?.find((target) => target.discoveredLabels.__meta_rollcall_node_id === id);
  const [catalog] = await consul.catalog.service.nodes(id);
  const [health] = (await consul.health.service({ service: id, passing: true })) as Array<{ Node: { Address: string }; Service: { Address: string; Port: number } }>;
  const projected = sink.services.get(id);
  return {
    'dns A': a.answers.map((record) => record[4]).join(',') || 'none',
    'dns SRV': srvRecord ? `${glue?.[4] ?? srvRecord[7]}:${srvRecord[6]}` : 'none',
    'prometheus http sd': sd?.labels.instance ?? 'none',
    'consul catalog': catalog ? `${String(catalog.ServiceAddress || catalog.Address)}:${String(catalog.ServicePort)}` : 'none',
    'consul health': health ? `${health.Service.Address || health.Node.Address}:${health.Service.Port}` : 'none',
    'consul sink': projected ? `${projected.Address}:${projected.Port}` : 'none',
  };
}

before(async () => {
  checkTarget = createServer((_request, response) => response.end('ok'));
  await new Promise<void>((resolve) => checkTarget.listen(0, '127.0.0.1', resolve));
  checkUrl = `http://127.0.0.1:${(checkTarget.address() as AddressInfo).port}/health`;
  sink = new FakeConsul();
  await sink.listen();
  t = await startTestServer({ config: { leaseTtlSeconds: 300, dnsPort: 0, dnsHost: '127.0.0.1', consulAddr: `127.0.0.1:${sink.port}`, consulReconcileIntervalMs: 60_000 } });
  const url = new URL(t.url);
  consul = new Consul({ host: url.hostname, port: Number(url.port) });
  for (const door of doors) await door.register();
  prometheus = await TestPrometheus.start(
    [
      'global:',
      '  scrape_interval: 1m',
      '  scrape_timeout: 1s',
      'scrape_configs:',
      `  - job_name: ${POOL}`,
      '    http_sd_configs:',
      `      - url: ${t.url}/api/v1/sd/prometheus`,
      '        refresh_interval: 1s',
      '',
    ].join('\n'),
  );
  // Prometheus has caught up once it holds what rollcall's SD lists, and the sink once every door's node is in Consul.
  await pollUntil(
    async () => {
      const listed = ((await (await fetch(`${t.url}/api/v1/sd/prometheus`)).json()) as Array<{ labels: Record<string, string> }>).map((group) => group.labels.__meta_rollcall_node_id).sort();
      const discovered = ((await prometheus?.activeTargets(POOL)) ?? []).map((target) => target.discoveredLabels.__meta_rollcall_node_id).sort();
      return { listed, discovered, projected: doors.filter((door) => sink.services.has(door.id)).length };
    },
    ({ listed, discovered, projected }) => JSON.stringify(listed) === JSON.stringify(discovered) && projected === doors.length,
    { timeoutMs: 20_000, intervalMs: 250, what: 'prometheus to discover what rollcall lists, and the sink to project every door' },
  );
});

after(async () => {
  consul?.destroy();
  await prometheus?.close();
  await t?.close();
  await sink?.close();
  await new Promise<void>((resolve) => checkTarget?.close(() => resolve()));
});

describe('a service registered through any door resolves the same on every surface', () => {
  for (const door of doors) {
    it(`${door.id}: ${door.expected}`, async () => {
      const [host] = door.expected.split(':');
      const answers = await surfaces(door.id);
      assert.deepEqual(answers, {
        'dns A': host,
        'dns SRV': door.expected,
        'prometheus http sd': door.expected,
        'consul catalog': door.expected,
        'consul health': door.expected,
        'consul sink': door.expected,
      });
    });
  }
});
