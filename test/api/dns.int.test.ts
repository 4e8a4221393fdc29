// rollcall's DNS interface queried by `dig` (BIND's client, not ours): A and SRV answers for services
// and tags with healthy instances only, glue A records, an expired node leaving the answers, NXDOMAIN
// with an SOA for unknown names, REFUSED outside the zone and for other classes, and TCP. DNS has no
// credential: it answers only the namespaces configured for it, and refuses to listen off loopback
// without authentication configured, as the HTTP listener does.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { loadConfig, type Config } from '../../src/config/config.js';
import { isRollcallError } from '../../src/domain/errors.js';
import { startServer } from '../../src/server.js';
import { testLogger } from '../support/logger.js';
import { createTestDatabase } from '../support/postgres.js';
import { pollUntil } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

const run = promisify(execFile);

let t: TestServer;
let port: number;

before(async () => {
  t = await startTestServer({ config: { leaseTtlSeconds: 60, sweepIntervalMs: 100, dnsPort: 0, dnsHost: '127.0.0.1', dnsNamespaces: ['default', 'beta'] } });
  port = t.server.dns?.port ?? 0;
  assert.ok(port > 0, 'the DNS interface listens');
});
after(async () => {
  await t.close();
});

interface Dig {
  status: string;
  flags: string[];
  answers: string[][];
  authority: string[][];
  additional: string[][];
}

/** Runs dig and reads its sections: each record as [name, ttl, class, type, ...data]. */
async function dig(name: string, type: string, extra: string[] = []): Promise<Dig> {
  const { stdout } = await run('dig', [`@127.0.0.1`, '-p', String(port), name, type, '+time=2', '+tries=1', '+nocookie', ...extra]);
  const status = /status: ([A-Z]+)/.exec(stdout)?.[1] ?? 'NONE';
  const flags = (/;; flags: ([a-z ]+);/.exec(stdout)?.[1] ?? '').trim().split(/\s+/);
  const section = (title: string): string[][] => {
    const match = new RegExp(`;; ${title} SECTION:\\n([\\s\\S]*?)(?:\\n\\n|$)`).exec(stdout);
    return (match?.[1] ?? '')
      .split('\n')
      .filter((line) => line && !line.startsWith(';'))
      .map((line) => line.trim().split(/\s+/));
  };
  return { status, flags, answers: section('ANSWER'), authority: section('AUTHORITY'), additional: section('ADDITIONAL').filter((record) => record[3] !== 'OPT') };
}

async function register(body: Record<string, unknown>): Promise<void> {
  const response = await json(`${t.url}/api/v1/nodes/register`, { body });
  assert.ok(response.status === 201 || response.status === 200, JSON.stringify(response.body));
}

describe('DNS interface', () => {
  before(async () => {
    await register({ node_id: 'web-1', hostname: 'web-1.local', ip: '10.1.0.1', role: 'frontend', node_type: 'web', labels: ['blue', 'eu'], endpoints: { api: 'http://10.1.0.1:8080' } });
    await register({ node_id: 'web-2', hostname: 'web-2.local', ip: '10.1.0.2', role: 'frontend', node_type: 'web', labels: ['green', 'eu'], endpoints: { api: 'http://10.1.0.2:8081' } });
    // Unhealthy: never in the answers.
    await register({
      node_id: 'web-3',
      hostname: 'web-3.local',
      ip: '10.1.0.3',
      role: 'frontend',
      node_type: 'web',
      labels: ['blue'],
      endpoints: { api: 'http://10.1.0.3:8082' },
      health_status: 'unhealthy',
    });
    // No IPv4 address: in SRV (target is its host name), skipped for A.
    await register({ node_id: 'web-4', hostname: 'web-4.local', role: 'frontend', node_type: 'web', labels: ['v6'], endpoints: { api: 'http://web-4.example.net:9000' } });
  });

  it('answers A with the IPv4 addresses of healthy instances, authoritatively', async () => {
    const result = await dig('web.service.consul', 'A');
    assert.equal(result.status, 'NOERROR');
    assert.ok(result.flags.includes('aa'), result.flags.join(' '));
    assert.deepEqual(result.answers.map((record) => record[4]).sort(), ['10.1.0.1', '10.1.0.2']);
    for (const record of result.answers) {
      assert.equal(record[0], 'web.service.consul.');
      assert.equal(record[1], '0', 'TTL 0 by default, as Consul');
      assert.equal(record[3], 'A');
    }
  });

  it('answers SRV with the endpoint ports, node targets and glue A records', async () => {
    const result = await dig('web.service.consul', 'SRV');
    assert.equal(result.status, 'NOERROR');
    const srv = result.answers.map((record) => `${record[4]} ${record[5]} ${record[6]} ${record[7]}`).sort();
    assert.deepEqual(srv, ['1 1 8080 web-1.node.consul.', '1 1 8081 web-2.node.consul.', '1 1 9000 web-4.example.net.']);
    const glue = result.additional.map((record) => `${record[0]} ${record[3]} ${record[4]}`).sort();
    assert.deepEqual(glue, ['web-1.node.consul. A 10.1.0.1', 'web-2.node.consul. A 10.1.0.2']);
    // The targets resolve too (node lookups).
    assert.deepEqual(
      (await dig('web-1.node.consul', 'A')).answers.map((record) => record[4]),
      ['10.1.0.1'],
    );
  });

  it('filters by tag (label), in the standard and the RFC 2782 form', async () => {
    const blue = await dig('blue.web.service.consul', 'A');
    assert.deepEqual(
      blue.answers.map((record) => record[4]),
      ['10.1.0.1'],
      'web-3 is blue but unhealthy',
    );
    const eu = await dig('eu.web.service.consul', 'SRV');
    assert.deepEqual(eu.answers.map((record) => record[6]).sort(), ['8080', '8081']);
    const rfc = await dig('_web._green.service.consul', 'SRV');
    assert.deepEqual(
      rfc.answers.map((record) => record[7]),
      ['web-2.node.consul.'],
    );
    const any = await dig('_web._tcp.service.consul', 'SRV');
    assert.equal(any.answers.length, 3);
  });

  it('answers NXDOMAIN with the SOA for unknown services, tags and names', async () => {
    for (const name of ['nothing.service.consul', 'purple.web.service.consul', 'what.is.this.consul']) {
      const result = await dig(name, 'A');
      assert.equal(result.status, 'NXDOMAIN', name);
      assert.equal(result.answers.length, 0);
      assert.equal(result.authority[0]?.[0], 'consul.');
      assert.equal(result.authority[0]?.[3], 'SOA');
      assert.equal(result.authority[0]?.[4], 'ns.consul.');
    }
  });

  it('answers NOERROR without records (and the SOA) for a type the name lacks', async () => {
    const result = await dig('web.service.consul', 'TXT');
    assert.equal(result.status, 'NOERROR');
    assert.equal(result.answers.length, 0);
    assert.equal(result.authority[0]?.[3], 'SOA');
  });

  it('refuses names outside its zone and classes other than IN', async () => {
    assert.equal((await dig('example.com', 'A')).status, 'REFUSED');
    assert.equal((await dig('web.service.consul', 'A', ['-c', 'CH'])).status, 'REFUSED');
  });

  it('answers over TCP as over UDP', async () => {
    const result = await dig('web.service.consul', 'SRV', ['+tcp']);
    assert.equal(result.status, 'NOERROR');
    assert.equal(result.answers.length, 3);
  });

  it('drops a node whose lease expires from the answers', async () => {
    await register({ node_id: 'cache-1', hostname: 'cache-1.local', ip: '10.2.0.1', role: 'cache', node_type: 'cache', endpoints: { api: 'http://10.2.0.1:6379' }, lease_ttl_seconds: 1 });
    await register({ node_id: 'cache-2', hostname: 'cache-2.local', ip: '10.2.0.2', role: 'cache', node_type: 'cache', endpoints: { api: 'http://10.2.0.2:6379' } });
    const both = await dig('cache.service.consul', 'A');
    assert.deepEqual(both.answers.map((record) => record[4]).sort(), ['10.2.0.1', '10.2.0.2']);
    // cache-1 sends no heartbeat: one second later its lease lapses and the sweeper writes it off.
    await pollUntil(
      async () => (await json<{ status: string }>(`${t.url}/api/v1/nodes/cache-1`)).body.status,
      (status) => status === 'offline',
      { timeoutMs: 5000, what: 'cache-1 to go offline' },
    );
    const left = await dig('cache.service.consul', 'A');
    assert.deepEqual(
      left.answers.map((record) => record[4]),
      ['10.2.0.2'],
    );
    const srv = await dig('cache.service.consul', 'SRV');
    assert.deepEqual(
      srv.answers.map((record) => record[7]),
      ['cache-2.node.consul.'],
    );
    assert.equal((await dig('cache-1.node.consul', 'A')).status, 'NXDOMAIN');
  });

  it('answers NXDOMAIN once the last instance of a service is gone', async () => {
    await register({ node_id: 'solo-1', hostname: 'solo-1.local', ip: '10.3.0.1', role: 'solo', node_type: 'solo', endpoints: { api: 'http://10.3.0.1:7000' } });
    assert.equal((await dig('solo.service.consul', 'A')).answers.length, 1);
    const removed = await json(`${t.url}/api/v1/nodes/solo-1`, { method: 'DELETE' });
    assert.equal(removed.status, 200);
    assert.equal((await dig('solo.service.consul', 'A')).status, 'NXDOMAIN');
  });

  it('cuts a large UDP answer to 512 bytes with TC set, and answers in full over TCP', async () => {
    for (let i = 0; i < 40; i += 1) {
      await register({ node_id: `many-${i}`, hostname: `many-${i}.local`, ip: `10.4.0.${i + 1}`, role: 'many', node_type: 'many', endpoints: { api: `http://10.4.0.${i + 1}:9100` } });
    }
    const udp = await dig('many.service.consul', 'SRV', ['+noedns', '+ignore']);
    assert.ok(udp.flags.includes('tc'), udp.flags.join(' '));
    assert.ok(udp.answers.length > 0 && udp.answers.length < 40, String(udp.answers.length));
    const tcp = await dig('many.service.consul', 'SRV', ['+tcp']);
    assert.equal(tcp.answers.length, 40);
    assert.equal(tcp.additional.length, 40);
  });
});

describe('DNS namespaces', () => {
  before(async () => {
    for (const namespace of ['beta', 'gamma']) {
      await register({
        namespace,
        node_id: `api-${namespace}`,
        hostname: `api-${namespace}.local`,
        ip: namespace === 'beta' ? '10.5.0.1' : '10.6.0.1',
        role: 'api',
        node_type: 'api',
        labels: ['blue'],
        endpoints: { api: `http://api-${namespace}.local:8000` },
      });
    }
  });

  it('answers the namespaces configured for it', async () => {
    assert.deepEqual(
      (await dig('api.service.beta.consul', 'A')).answers.map((record) => record[4]),
      ['10.5.0.1'],
    );
    assert.deepEqual(
      (await dig('api.service.beta.consul', 'SRV')).answers.map((record) => record[7]),
      ['api-beta.node.beta.consul.'],
    );
    assert.deepEqual(
      (await dig('api-beta.node.beta.consul', 'A')).answers.map((record) => record[4]),
      ['10.5.0.1'],
    );
  });

  it('answers a namespace not configured for it as if it held nothing: NXDOMAIN with the SOA, on UDP and TCP', async () => {
    for (const [name, type, extra] of [
      ['api.service.gamma.consul', 'A', []],
      ['api.service.gamma.consul', 'SRV', []],
      ['blue.api.service.gamma.consul', 'A', []],
      ['_api._tcp.service.gamma.consul', 'SRV', []],
      ['api-gamma.node.gamma.consul', 'A', []],
      ['api.service.gamma.consul', 'SRV', ['+tcp']],
    ] as const) {
      const result = await dig(name, type, [...extra]);
      assert.equal(result.status, 'NXDOMAIN', `${name} ${type} ${extra.join(' ')}`);
      assert.deepEqual(result.answers, []);
      assert.deepEqual(result.additional, []);
      assert.equal(result.authority[0]?.[3], 'SOA');
    }
    // The same as a namespace that does not exist at all.
    assert.equal((await dig('api.service.nowhere.consul', 'A')).status, 'NXDOMAIN');
  });
});

describe('DNS listener security', () => {
  async function start(config: Partial<Config>): Promise<() => Promise<void>> {
    const database = await createTestDatabase();
    try {
      const server = await startServer(loadConfig({ env: {}, flags: { port: 0, logLevel: 'silent', databaseUrl: database.url, dnsPort: 0, ...config } }), testLogger);
      assert.ok((server.dns?.port ?? 0) > 0, 'the DNS interface listens');
      return async () => {
        await server.stop();
        await database.drop();
      };
    } catch (error) {
      await database.drop();
      throw error;
    }
  }

  it('refuses to serve DNS off loopback without authentication, naming dnsHost and how to fix it', async () => {
    // A server that starts anyway is stopped, so the failure is the assertion and not a hang.
    const error = await start({ dnsHost: '0.0.0.0' }).then(
      async (stop) => stop(),
      (refusal: unknown) => refusal,
    );
    assert.ok(isRollcallError(error), 'refused to start');
    assert.equal(error.code, 'CONFIG_INVALID');
    assert.equal(error.details?.field, 'dnsHost');
    assert.match(error.message, /dnsHost/);
    assert.match(error.message, /rollcall key create/);
    assert.match(error.message, /--insecure/);
  });

  it('serves DNS off loopback when authentication is configured, or when started insecure on purpose', async () => {
    for (const config of [
      { dnsHost: '0.0.0.0', authMode: 'keys' },
      { dnsHost: '0.0.0.0', insecure: true },
    ] as const) {
      const stop = await start(config);
      await stop();
    }
  });
});
