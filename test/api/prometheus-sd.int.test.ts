// Real Prometheus (Debian's build, on loopback, with a temporary config) discovers scrape targets from
// rollcall: through http_sd_configs on /api/v1/sd/prometheus, and through dns_sd_configs (SRV) on
// rollcall's DNS interface. The test reads Prometheus' own /api/v1/targets.
//
// dns_sd_configs has no nameserver or port setting: Prometheus reads /etc/resolv.conf and asks port 53.
// So, when the test runs as root and may create a mount namespace, rollcall's DNS listens on port 53 of
// a loopback address of its own and Prometheus runs in a private mount namespace where a temporary
// resolv.conf naming that address is bind-mounted over /etc/resolv.conf (the host's file is untouched).
// Elsewhere the DNS part is skipped, except in CI (CI=true), where it must run; test/api/dns.int.test.ts proves the SRV answers with dig.
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort, pollUntil } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

const PROMETHEUS = '/usr/bin/prometheus';

interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

interface ActiveTarget {
  scrapePool: string;
  scrapeUrl: string;
  labels: Record<string, string>;
  discoveredLabels: Record<string, string>;
}

/** A private mount namespace lets Prometheus see another resolv.conf; it needs root. */
function canFakeResolver(): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync('unshare', ['--mount', 'true'], { stdio: 'ignore' }).status === 0;
}

const dnsSd = canFakeResolver();
/** A loopback address of this run's own, so port 53 is ours alone. */
const dnsHost = `127.${50 + (process.pid % 150)}.${Math.floor(Math.random() * 250) + 1}.${Math.floor(Math.random() * 250) + 1}`;

let t: TestServer;
let dir: string;
let prometheus: ChildProcess | null = null;
let prometheusUrl: string;
let prometheusLog = '';

const nodes = [
  // A metrics URL gives host:port, scheme, path and parameters.
  {
    node_id: 'gpu-worker-1',
    hostname: 'gpu-worker-1.local',
    ip: '10.5.0.1',
    role: 'inference',
    node_type: 'worker',
    node_version: '2.1.0',
    labels: ['gpu', 'eu'],
    endpoints: { metrics: 'https://10.5.0.1:9400/custom/metrics?format=prometheus' },
    metadata: { zone: 'eu-west-1a' },
  },
  // An api URL: host:port, default path.
  { node_id: 'cpu-worker-2', hostname: 'cpu-worker-2.local', ip: '10.5.0.4', role: 'batch', node_type: 'worker', node_version: '2.0.0', labels: ['cpu'], endpoints: { api: 'http://10.5.0.4:7000' } },
  // A health URL only.
  { node_id: 'api-1', hostname: 'api-1.local', ip: '10.5.0.2', role: 'gateway', node_type: 'api', node_version: '1.4.2', labels: [], endpoints: { health: 'http://10.5.0.2:8080/health' } },
  // ip and a metrics_port field.
  { node_id: 'bare-1', hostname: 'bare-1.local', ip: '10.5.0.3', role: 'exporter', node_type: 'exporter', metadata: { metrics_port: 9100 } },
  // Nothing to scrape: left out.
  { node_id: 'nothing-1', hostname: 'nothing-1.local', role: 'ghost', node_type: 'ghost' },
  // Another namespace.
  {
    node_id: 'prod-1',
    namespace: 'prod',
    hostname: 'prod-1.local',
    ip: '10.6.0.1',
    role: 'inference',
    node_type: 'worker',
    node_version: '3.0.0',
    labels: ['gpu'],
    endpoints: { metrics: 'http://10.6.0.1:9400/metrics' },
  },
];

function prometheusConfig(rollcallUrl: string): string {
  const relabel = `
    relabel_configs:
      - action: labelmap
        regex: __meta_rollcall_(namespace|node_id|node_type|role|version|labels|metadata_zone)
        replacement: rollcall_$1`;
  const lines = [
    'global:',
    '  scrape_interval: 1m',
    '  scrape_timeout: 1s',
    'scrape_configs:',
    '  - job_name: rollcall-http',
    '    http_sd_configs:',
    `      - url: ${rollcallUrl}/api/v1/sd/prometheus`,
    '        refresh_interval: 1s',
    relabel,
    '  - job_name: rollcall-http-gpu',
    '    http_sd_configs:',
    `      - url: ${rollcallUrl}/api/v1/sd/prometheus?label=gpu&namespace=default`,
    '        refresh_interval: 1s',
    relabel,
  ];
  if (dnsSd) {
    lines.push(
      '  - job_name: rollcall-dns',
      '    dns_sd_configs:',
      '      - names: [worker.service.consul]',
      '        type: SRV',
      '        refresh_interval: 1s',
      '  - job_name: rollcall-dns-gpu',
      '    dns_sd_configs:',
      '      - names: [gpu.worker.service.consul]',
      '        type: SRV',
      '        refresh_interval: 1s',
    );
  }
  return `${lines.join('\n')}\n`;
}

async function startPrometheus(config: string): Promise<void> {
  const port = await freePort();
  prometheusUrl = `http://127.0.0.1:${port}`;
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const args = [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'];
  if (dnsSd) {
    writeFileSync(join(dir, 'resolv.conf'), `nameserver ${dnsHost}\noptions timeout:1 attempts:1\n`);
    // unshare and sh both exec: the child's pid ends up being Prometheus'.
    prometheus = spawn('unshare', ['--mount', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && exec "$@"', join(dir, 'resolv.conf'), PROMETHEUS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  } else {
    prometheus = spawn(PROMETHEUS, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  }
  prometheus.stdout?.setEncoding('utf8').on('data', (chunk: string) => (prometheusLog += chunk));
  prometheus.stderr?.setEncoding('utf8').on('data', (chunk: string) => (prometheusLog = (prometheusLog + chunk).slice(-20_000)));
  await pollUntil(
    async () => {
      if (prometheus?.exitCode !== null) throw new Error(`prometheus exited (${String(prometheus?.exitCode)}):\n${prometheusLog}`);
      return fetch(`${prometheusUrl}/-/ready`)
        .then((response) => response.status)
        .catch(() => 0);
    },
    (status) => status === 200,
    { timeoutMs: 20_000, intervalMs: 200, what: 'prometheus to be ready' },
  );
}

async function activeTargets(): Promise<ActiveTarget[]> {
  const response = await json<{ status: string; data: { activeTargets: ActiveTarget[] } }>(`${prometheusUrl}/api/v1/targets?state=active`);
  assert.equal(response.body.status, 'success');
  return response.body.data.activeTargets;
}

function inPool(targets: ActiveTarget[], pool: string): ActiveTarget[] {
  return targets.filter((target) => target.scrapePool === pool);
}

/** Waits until Prometheus' targets of `pool` are exactly `expected` (instance labels), returns them. */
async function waitForPool(pool: string, expected: string[]): Promise<ActiveTarget[]> {
  const want = [...expected].sort();
  const targets = await pollUntil(
    async () => inPool(await activeTargets(), pool),
    (current) => JSON.stringify(current.map((target) => target.labels.instance).sort()) === JSON.stringify(want),
    { timeoutMs: 30_000, intervalMs: 250, what: `prometheus pool ${pool} to hold ${want.join(', ')}` },
  );
  return targets;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rollcall-prometheus-'));
  t = await startTestServer({ config: { leaseTtlSeconds: 60, ...(dnsSd ? { dnsPort: 53, dnsHost } : {}) } });
  for (const node of nodes) {
    const response = await json(`${t.url}/api/v1/nodes/register`, { body: node });
    assert.equal(response.status, 201, JSON.stringify(response.body));
  }
  await startPrometheus(prometheusConfig(t.url));
});

after(async () => {
  const child = prometheus;
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('GET /api/v1/sd/prometheus', () => {
  it('serves one target group per online node with a scrape target, as JSON', async () => {
    const response = await fetch(`${t.url}/api/v1/sd/prometheus`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
    const groups = (await response.json()) as TargetGroup[];
    const byId = new Map(groups.map((group) => [group.labels.__meta_rollcall_node_id, group]));
    // The registry's own node is a target too (its metrics endpoint).
    assert.deepEqual([...byId.keys()].sort(), ['api-1', 'bare-1', 'cpu-worker-2', 'gpu-worker-1', 'prod-1', t.server.registryId].sort());
    assert.deepEqual(byId.get('gpu-worker-1'), {
      targets: ['10.5.0.1:9400'],
      labels: {
        __meta_rollcall_namespace: 'default',
        __meta_rollcall_node_id: 'gpu-worker-1',
        __meta_rollcall_node_type: 'worker',
        __meta_rollcall_version: '2.1.0',
        __meta_rollcall_role: 'inference',
        __meta_rollcall_labels: ',gpu,eu,',
        __meta_rollcall_node_name: 'gpu-worker-1.local',
        __meta_rollcall_hostname: 'gpu-worker-1.local',
        __meta_rollcall_ip: '10.5.0.1',
        __meta_rollcall_health_status: 'healthy',
        __meta_rollcall_target_source: 'metrics',
        __meta_rollcall_metadata_zone: 'eu-west-1a',
        __scheme__: 'https',
        __metrics_path__: '/custom/metrics',
        __param_format: 'prometheus',
      },
    });
    assert.deepEqual(byId.get('api-1')?.targets, ['10.5.0.2:8080']);
    assert.equal(byId.get('api-1')?.labels.__metrics_path__, undefined, 'a health URL gives no metrics path');
    assert.equal(byId.get('api-1')?.labels.__meta_rollcall_labels, '');
    assert.deepEqual(byId.get('bare-1')?.targets, ['10.5.0.3:9100']);
  });

  it('filters by namespace, node_type, role and label', async () => {
    const ids = async (query: string): Promise<string[]> =>
      ((await (await fetch(`${t.url}/api/v1/sd/prometheus?${query}`)).json()) as TargetGroup[]).map((group) => group.labels.__meta_rollcall_node_id as string).sort();
    assert.deepEqual(await ids('namespace=prod'), ['prod-1']);
    assert.deepEqual(await ids('node_type=worker'), ['cpu-worker-2', 'gpu-worker-1', 'prod-1']);
    assert.deepEqual(await ids('node_type=worker&namespace=default&role=batch'), ['cpu-worker-2']);
    assert.deepEqual(await ids('label=gpu&label=eu'), ['gpu-worker-1']);
    assert.deepEqual(await ids('label=nothing'), []);
    const bad = await json(`${t.url}/api/v1/sd/prometheus?namespace=Not_A_Label`);
    assert.equal(bad.status, 400);
  });
});

describe('Prometheus discovers targets from rollcall', () => {
  it('through http_sd_configs, with __meta_rollcall_* labels relabelled into target labels', async () => {
    const expected = ['10.5.0.1:9400', '10.5.0.4:7000', '10.5.0.2:8080', '10.5.0.3:9100', '10.6.0.1:9400', new URL(t.url).host];
    const targets = await waitForPool('rollcall-http', expected);
    const gpu = targets.find((target) => target.labels.instance === '10.5.0.1:9400');
    assert.ok(gpu);
    assert.equal(gpu.scrapeUrl, 'https://10.5.0.1:9400/custom/metrics?format=prometheus');
    assert.equal(gpu.labels.rollcall_namespace, 'default');
    assert.equal(gpu.labels.rollcall_node_id, 'gpu-worker-1');
    assert.equal(gpu.labels.rollcall_node_type, 'worker');
    assert.equal(gpu.labels.rollcall_role, 'inference');
    assert.equal(gpu.labels.rollcall_version, '2.1.0');
    assert.equal(gpu.labels.rollcall_labels, ',gpu,eu,');
    assert.equal(gpu.labels.rollcall_metadata_zone, 'eu-west-1a');
    assert.equal(gpu.labels.job, 'rollcall-http');
    assert.equal(gpu.discoveredLabels.__meta_rollcall_health_status, 'healthy');
    const api = targets.find((target) => target.labels.instance === '10.5.0.2:8080');
    assert.equal(api?.scrapeUrl, 'http://10.5.0.2:8080/metrics');
    assert.equal(targets.find((target) => target.labels.instance === '10.6.0.1:9400')?.labels.rollcall_namespace, 'prod');
    // The query string of the SD URL filters: only default-namespace gpu nodes.
    await waitForPool('rollcall-http-gpu', ['10.5.0.1:9400']);
  });

  it('drops a deregistered node at its next refresh', async () => {
    const removed = await json(`${t.url}/api/v1/nodes/api-1`, { method: 'DELETE' });
    assert.equal(removed.status, 200);
    await waitForPool('rollcall-http', ['10.5.0.1:9400', '10.5.0.4:7000', '10.5.0.3:9100', '10.6.0.1:9400', new URL(t.url).host]);
  });

  it(
    "through dns_sd_configs (SRV records from rollcall's DNS interface)",
    { skip: dnsSd || process.env.CI ? false : "needs root and a mount namespace to point Prometheus' resolver at rollcall; dig covers SRV in dns.int.test.ts" },
    async () => {
      const targets = await waitForPool('rollcall-dns', ['cpu-worker-2.node.consul:7000', 'gpu-worker-1.node.consul:9400']);
      const gpu = targets.find((target) => target.labels.instance === 'gpu-worker-1.node.consul:9400');
      const { __meta_dns_name, __meta_dns_srv_record_target, __meta_dns_srv_record_port } = gpu?.discoveredLabels ?? {};
      assert.deepEqual(
        { __meta_dns_name, __meta_dns_srv_record_target, __meta_dns_srv_record_port },
        {
          __meta_dns_name: 'worker.service.consul',
          __meta_dns_srv_record_target: 'gpu-worker-1.node.consul.',
          __meta_dns_srv_record_port: '9400',
        },
      );
      assert.equal(gpu?.scrapeUrl, 'http://gpu-worker-1.node.consul:9400/metrics');
      // A tag lookup: only the gpu worker.
      await waitForPool('rollcall-dns-gpu', ['gpu-worker-1.node.consul:9400']);
    },
  );
});
