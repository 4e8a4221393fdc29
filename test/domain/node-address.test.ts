// Where a node is reached: service addresses for DNS and scrape targets for Prometheus discovery.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { instanceOf, parseServiceDefinition, registrationOf } from '../../src/api/consul/consul-model.js';
import { parseIntrospection } from '../../src/domain/introspection.js';
import type { JsonObject } from '../../src/domain/json.js';
import { announcedAddress, hostPort, ipv4Of, nodeHost, scrapeTarget, serviceAddress } from '../../src/domain/node-address.js';
import { fromDagi, recordFrom, type NodeRecord, type Registration } from '../../src/domain/node.js';
import { serviceRegistrationOf } from '../../src/projections/consul/consul-service.js';

const NOW = new Date().toISOString();

function stored(registration: Registration): NodeRecord {
  return recordFrom(registration, { status: 'online', registered_at: NOW, updated_at: NOW, last_heartbeat: NOW, removed_at: null, removal_reason: null });
}

/** A node as the DAGI register door stores it. */
function node(fields: { ip?: string; hostname?: string; endpoints?: JsonObject; metadata?: JsonObject }): NodeRecord {
  return stored(fromDagi({ hostname: fields.hostname ?? 'host-a', role: 'worker', ...fields }, { leaseTtlMs: 60_000 }));
}

/** A node as the introspection door stores it. */
function introspected(payload: JsonObject): NodeRecord {
  return stored(parseIntrospection(payload, { leaseTtlMs: 60_000 }).registration);
}

describe('serviceAddress', () => {
  it('prefers api, then health, then metrics', () => {
    assert.deepEqual(serviceAddress(node({ endpoints: { metrics: 'http://10.0.0.1:9100/m', health: 'http://10.0.0.1:8081/h', api: 'http://10.0.0.1:8080' } })), {
      host: '10.0.0.1',
      port: 8080,
      source: 'api',
    });
    assert.deepEqual(serviceAddress(node({ endpoints: { metrics: 'http://10.0.0.1:9100/m', health: 'https://svc.example/h' } })), { host: 'svc.example', port: 443, source: 'health' });
  });

  it('takes the first listed endpoint that gives a host and a port; other endpoints are not addresses', () => {
    assert.deepEqual(serviceAddress(node({ endpoints: { health: 'http://10.0.0.1:8081/h', http: 'http://10.0.0.1:8000' } })), { host: '10.0.0.1', port: 8000, source: 'http' });
    assert.deepEqual(serviceAddress(node({ endpoints: { api: 'tcp://10.0.0.1', health: 'http://10.0.0.1:8081/h' } })), { host: '10.0.0.1', port: 8081, source: 'health' });
    assert.deepEqual(serviceAddress(node({ endpoints: { grpc: 'grpc://10.0.0.1' } })), { host: '10.0.0.1', port: 50051, source: 'grpc' });
    const elsewhere = node({ ip: '10.0.0.9', endpoints: { docs: 'https://docs.example', kafka: 'kafka://broker:9092' } });
    assert.equal(serviceAddress(elsewhere), null);
    assert.deepEqual(announcedAddress(elsewhere), { host: '10.0.0.9', port: 0 });
    assert.equal(nodeHost(elsewhere), '10.0.0.9');
  });

  it('falls back to ip or hostname with a port field, and maps wildcard binds to the node', () => {
    assert.deepEqual(serviceAddress(node({ ip: '10.0.0.2', endpoints: { port: 7000 } })), { host: '10.0.0.2', port: 7000, source: 'ip+port' });
    assert.deepEqual(serviceAddress(node({ metadata: { port: '7001' } })), { host: 'host-a', port: 7001, source: 'hostname+port' });
    assert.equal(serviceAddress(node({})), null);
    assert.equal(serviceAddress(node({ endpoints: { api: 'not a url' } })), null);
    assert.deepEqual(serviceAddress(node({ ip: '10.0.0.3', endpoints: { api: 'http://0.0.0.0:8080' } })), { host: '10.0.0.3', port: 8080, source: 'api' });
  });
});

describe('scrapeTarget', () => {
  it('reads scheme, path and parameters from a metrics URL', () => {
    assert.deepEqual(scrapeTarget(node({ endpoints: { metrics: 'https://[::1]:9400/x/metrics?a=1&b=2', api: 'http://10.0.0.1:1' } })), {
      host: '::1',
      port: 9400,
      source: 'metrics',
      scheme: 'https',
      metricsPath: '/x/metrics',
      params: { a: '1', b: '2' },
    });
  });

  it('uses the health or api host:port with the default path, else a metrics_port', () => {
    assert.deepEqual(scrapeTarget(node({ endpoints: { health: 'http://10.0.0.1:8081/health' } })), { host: '10.0.0.1', port: 8081, source: 'health', scheme: 'http', metricsPath: null, params: {} });
    assert.equal(scrapeTarget(node({ ip: '10.0.0.4', metadata: { metrics_port: 9100 } }))?.port, 9100);
    assert.equal(scrapeTarget(node({})), null);
  });
});

describe('hostPort and ipv4Of', () => {
  it('brackets IPv6 and finds an IPv4 address in ip or the endpoint', () => {
    assert.equal(hostPort({ host: '::1', port: 80 }), '[::1]:80');
    assert.equal(hostPort({ host: 'a.example', port: 80 }), 'a.example:80');
    assert.equal(ipv4Of(node({ ip: '10.0.0.5' })), '10.0.0.5');
    assert.equal(ipv4Of(node({ endpoints: { api: 'http://10.0.0.6:80' } })), '10.0.0.6');
    assert.equal(ipv4Of(node({ ip: 'fe80::1', endpoints: { api: 'http://svc.example' } })), null);
  });
});

describe("the Consul door's shape", () => {
  const consulNode = (definition: Record<string, unknown>): NodeRecord => {
    return stored(registrationOf(parseServiceDefinition(definition), { namespace: 'default', agent: 'rollcall', defaultLeaseTtlMs: 60_000, existing: undefined }));
  };

  it("takes the definition's Address and Port as the service address, before an HTTP check's URL", () => {
    const node = consulNode({ Name: 'web', Address: '10.0.0.5', Port: 8080, Check: { HTTP: 'http://10.0.0.5:9000/health', Interval: '10s' } });
    assert.deepEqual(serviceAddress(node), { host: '10.0.0.5', port: 8080, source: 'service' });
    assert.deepEqual(scrapeTarget(node), { host: '10.0.0.5', port: 8080, source: 'service', scheme: null, metricsPath: null, params: {} });
    assert.equal(ipv4Of(node), '10.0.0.5');
    assert.equal(nodeHost(node), '10.0.0.5');
  });

  it("places a service without an Address at the agent's loopback address, as its node", () => {
    const node = consulNode({ Name: 'cache', Port: 6379 });
    assert.deepEqual(serviceAddress(node), { host: '127.0.0.1', port: 6379, source: 'service' });
    assert.equal(ipv4Of(node), '127.0.0.1');
    assert.equal(nodeHost(node), '127.0.0.1');
  });

  it('gives no service port, and guesses none, when the definition has Port 0', () => {
    const withAddress = consulNode({ Name: 'web', Address: 'web.example', Check: { HTTP: 'http://web.example:9000/health', Interval: '10s' } });
    assert.equal(serviceAddress(withAddress), null);
    assert.equal(scrapeTarget(withAddress), null);
    assert.deepEqual(announcedAddress(withAddress), { host: 'web.example', port: 0 });
    const bare = consulNode({ Name: 'plain', Check: { HTTP: 'http://127.0.0.1:9000/health', Interval: '10s' } });
    assert.equal(serviceAddress(bare), null);
    assert.deepEqual(announcedAddress(bare), { host: '', port: 0 });
  });
});

describe('one answer per door on every surface', () => {
  const doors: Array<{ door: string; node: NodeRecord; expected: string }> = [
    { door: 'DAGI register, api URL', node: node({ ip: '10.0.1.1', endpoints: { api: 'http://10.0.1.1:8101', health: 'http://10.0.1.1:8101/health' } }), expected: '10.0.1.1:8101' },
    { door: 'DAGI register, ip and port field', node: node({ ip: '10.0.1.2', metadata: { port: 8102 } }), expected: '10.0.1.2:8102' },
    {
      door: 'introspection, endpoint bound to every interface',
      node: introspected({ node_id: 'i-1', node_type: 'svc', endpoints: { api: 'http://0.0.0.0:8103' }, metadata: { ip: '10.0.1.3', hostname: 'i-1.local' } }),
      expected: '10.0.1.3:8103',
    },
    { door: 'introspection, metrics URL only', node: introspected({ node_id: 'i-2', node_type: 'svc', endpoints: { metrics: 'http://10.0.1.4:9104/metrics' } }), expected: '10.0.1.4:9104' },
    {
      door: 'Consul agent register, HTTP check on another port',
      node: stored(
        registrationOf(parseServiceDefinition({ Name: 'svc', ID: 'c-1', Address: '10.0.1.5', Port: 8105, Check: { HTTP: 'http://10.0.1.5:9105/h', Interval: '10s' } }), {
          namespace: 'default',
          agent: 'rollcall',
          defaultLeaseTtlMs: 60_000,
          existing: undefined,
        }),
      ),
      expected: '10.0.1.5:8105',
    },
  ];
  const mapping = { serviceName: '{node_type}', check: 'ttl', checkInterval: '30s', checkTimeout: '5s', deregisterAfter: '90s', environment: 'dev' } as const;

  for (const { door, node: record, expected } of doors) {
    it(door, () => {
      const service = serviceAddress(record);
      const scrape = scrapeTarget(record);
      const instance = instanceOf(record);
      const sink = serviceRegistrationOf(record, mapping);
      const [host] = expected.split(':');
      assert.deepEqual(
        {
          'dns A': ipv4Of(record),
          'dns SRV': service && hostPort(service),
          'prometheus sd': scrape && hostPort(scrape),
          'consul api': `${instance.address || instance.nodeAddress}:${instance.port}`,
          'consul sink': `${sink.Address}:${sink.Port}`,
        },
        { 'dns A': host, 'dns SRV': expected, 'prometheus sd': expected, 'consul api': expected, 'consul sink': expected },
      );
    });
  }
});
