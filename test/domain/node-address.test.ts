// Where a node is reached: service addresses for DNS and scrape targets for Prometheus discovery.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { hostPort, ipv4Of, scrapeTarget, serviceAddress } from '../../src/domain/node-address.js';
import { fromDagi, recordFrom, type NodeRecord } from '../../src/domain/node.js';
import type { JsonObject } from '../../src/domain/json.js';

function node(fields: { ip?: string; hostname?: string; endpoints?: JsonObject; metadata?: JsonObject }): NodeRecord {
  const now = new Date().toISOString();
  const registration = fromDagi({ hostname: fields.hostname ?? 'host-a', role: 'worker', ...fields }, { leaseTtlMs: 60_000 });
  return recordFrom(registration, { status: 'online', registered_at: now, updated_at: now, last_heartbeat: now, removed_at: null, removal_reason: null });
}

describe('serviceAddress', () => {
  it('prefers api, then health, then metrics', () => {
    assert.deepEqual(serviceAddress(node({ endpoints: { metrics: 'http://10.0.0.1:9100/m', health: 'http://10.0.0.1:8081/h', api: 'http://10.0.0.1:8080' } })), { host: '10.0.0.1', port: 8080, source: 'api' });
    assert.deepEqual(serviceAddress(node({ endpoints: { metrics: 'http://10.0.0.1:9100/m', health: 'https://svc.example/h' } })), { host: 'svc.example', port: 443, source: 'health' });
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
      host: '::1', port: 9400, source: 'metrics', scheme: 'https', metricsPath: '/x/metrics', params: { a: '1', b: '2' },
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
