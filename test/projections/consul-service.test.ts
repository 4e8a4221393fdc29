// How a node becomes a Consul service (name template, address, bounded meta, checks, drift), and
// where the sink's Consul address comes from.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/config.js';
import type { NodeRecord } from '../../src/domain/node.js';
import { consulBaseUrl, type ConsulAgentService } from '../../src/projections/consul/consul-client.js';
import { driftOf, nodeOfService, serviceLocationOf, serviceNameOf, serviceRegistrationOf, type ServiceMapping } from '../../src/projections/consul/consul-service.js';

const mapping: ServiceMapping = { serviceName: '{node_type}', check: 'http', checkInterval: '30s', checkTimeout: '5s', deregisterAfter: '90s', environment: 'dev' };

function node(fields: Partial<NodeRecord> = {}): NodeRecord {
  return {
    namespace: 'default',
    node_id: 'n1',
    node_name: null,
    node_type: 'orchestrator',
    node_version: '1.0.0',
    hostname: 'box',
    ip: '10.0.0.1',
    role: null,
    labels: [],
    capabilities: {},
    endpoints: {},
    configuration: {},
    current_state: {},
    metadata: {},
    health_status: 'healthy',
    incarnation: 1,
    lease_ttl_ms: 90_000,
    status: 'online',
    content_hash: '',
    registered_at: '',
    updated_at: '',
    last_heartbeat: new Date().toISOString(),
    removed_at: null,
    removal_reason: null,
    ...fields,
  };
}

describe('consul service mapping', () => {
  it('names services from the template, DNS-friendly', () => {
    assert.equal(serviceNameOf(node({ node_type: 'state_manager' }), '{node_type}'), 'state-manager');
    assert.equal(serviceNameOf(node({ namespace: 'prod' }), '{namespace}-{node_type}'), 'prod-orchestrator');
  });

  it("uses the seeds' HTTP check of the health endpoint, and a TTL check when there is none", () => {
    const http = serviceRegistrationOf(node({ endpoints: { api: 'https://api.example:8443', health: 'http://10.0.0.1:8080/health' } }), mapping);
    assert.deepEqual(http.Check, { HTTP: 'http://10.0.0.1:8080/health', Interval: '30s', Timeout: '5s', DeregisterCriticalServiceAfter: '90s' });
    assert.equal(http.Address, 'api.example');
    assert.equal(http.Port, 8443);
    const ttl = serviceRegistrationOf(node({ lease_ttl_ms: 2500 }), mapping);
    assert.equal(ttl.Check?.TTL, '2500ms');
    assert.equal(ttl.Check?.CheckID, 'service:n1');
    assert.equal(ttl.Address, '10.0.0.1');
    assert.equal(ttl.Port, 0);
  });

  it("keeps meta within Consul's limits", () => {
    const registration = serviceRegistrationOf(node({ capabilities: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`capability_number_${i}`, true])) }), mapping);
    assert.ok((registration.Meta.capabilities ?? '').length <= 512);
    for (const key of Object.keys(registration.Meta)) assert.match(key, /^[A-Za-z0-9_-]{1,128}$/);
  });

  it('sees drift in name, tags, meta, address and port, not in tag order', () => {
    const desired = serviceRegistrationOf(node({ labels: ['a', 'b'] }), mapping);
    const actual = { ID: desired.ID, Service: desired.Name, Tags: [...desired.Tags].reverse(), Meta: { ...desired.Meta }, Address: desired.Address, Port: desired.Port };
    assert.deepEqual(driftOf(actual, desired), []);
    assert.deepEqual(driftOf({ ...actual, Service: 'x', Tags: ['a'], Meta: {}, Address: 'y', Port: 1 }, desired), ['name', 'tags', 'meta', 'address', 'port']);
  });
});

describe('consul service mapping across namespaces', () => {
  it('keeps the plain node_id in the default namespace and prefixes it with <namespace>~ elsewhere', () => {
    const home = serviceRegistrationOf(node({ node_id: 'w-1', node_type: 'tool' }), { ...mapping, check: 'ttl' });
    const beta = serviceRegistrationOf(node({ node_id: 'w-1', node_type: 'tool', namespace: 'beta' }), { ...mapping, check: 'ttl' });
    assert.deepEqual([home.ID, home.Name, home.Check?.CheckID, home.Meta.namespace], ['w-1', 'tool', 'service:w-1', 'default']);
    assert.deepEqual([beta.ID, beta.Name, beta.Check?.CheckID, beta.Meta.namespace], ['beta~w-1', 'beta-tool', 'service:beta~w-1', 'beta']);
    assert.equal(serviceLocationOf(node({ namespace: 'beta' }), mapping).namespace, undefined);
  });

  it('takes the configured default namespace as the one with plain IDs', () => {
    const prod = { ...mapping, defaultNamespace: 'prod' };
    assert.equal(serviceRegistrationOf(node({ namespace: 'prod' }), prod).ID, 'n1');
    assert.equal(serviceRegistrationOf(node({ namespace: 'default' }), prod).ID, 'default~n1');
  });

  it("names other namespaces' services apart unless told otherwise", () => {
    const beta = node({ namespace: 'beta', node_type: 'ai_worker', role: 'gpu' });
    assert.equal(serviceRegistrationOf(beta, { ...mapping, serviceName: 'svc-{node_type}' }).Name, 'beta-svc-ai-worker');
    assert.equal(serviceRegistrationOf(beta, { ...mapping, serviceName: '{node_type}-{namespace}' }).Name, 'ai-worker-beta');
    assert.equal(serviceRegistrationOf(beta, { ...mapping, namespaceServiceName: '{role}-{namespace}' }).Name, 'gpu-beta');
    assert.equal(serviceRegistrationOf(node({ node_type: 'ai_worker' }), { ...mapping, namespaceServiceName: '{role}-{namespace}' }).Name, 'ai-worker');
  });

  it('puts each namespace in the Consul Enterprise namespace of its name, with plain IDs and names', () => {
    const enterprise = { ...mapping, namespaces: 'enterprise' as const };
    const beta = node({ namespace: 'beta', node_id: 'w-1', node_type: 'tool' });
    assert.deepEqual(serviceLocationOf(beta, enterprise), { id: 'w-1', namespace: 'beta' });
    assert.deepEqual(serviceLocationOf(node({ node_id: 'w-1' }), enterprise), { id: 'w-1', namespace: 'default' });
    assert.equal(serviceRegistrationOf(beta, enterprise).Name, 'tool');
    assert.equal(serviceRegistrationOf(beta, enterprise).ID, 'w-1');
  });

  it('maps a service in Consul back to its namespace and node', () => {
    const service = (ID: string, namespace?: string): ConsulAgentService => ({ ID, Service: 'tool', Meta: namespace === undefined ? {} : { namespace } });
    assert.deepEqual(nodeOfService(service('beta~w-1', 'beta'), undefined, mapping), { namespace: 'beta', node_id: 'w-1' });
    assert.deepEqual(nodeOfService(service('w-1', 'default'), undefined, mapping), { namespace: 'default', node_id: 'w-1' });
    assert.deepEqual(nodeOfService(service('w-1'), undefined, mapping), { namespace: 'default', node_id: 'w-1' });
    // Registered before IDs were scoped: the meta says where it belongs.
    assert.deepEqual(nodeOfService(service('w-1', 'beta'), undefined, mapping), { namespace: 'beta', node_id: 'w-1' });
    assert.deepEqual(nodeOfService(service('w-1', 'default'), 'gamma', { ...mapping, namespaces: 'enterprise' }), { namespace: 'gamma', node_id: 'w-1' });
  });
});

describe('consul address', () => {
  it("comes from CONSUL_HTTP_ADDR, or the seeds' CONSUL_HOST/CONSUL_PORT", () => {
    assert.equal(loadConfig({ env: { CONSUL_HTTP_ADDR: 'https://consul.internal:8501', CONSUL_HTTP_TOKEN: 't' } }).consulAddr, 'https://consul.internal:8501');
    assert.equal(loadConfig({ env: { CONSUL_HOST: 'localhost', CONSUL_PORT: '28500' } }).consulAddr, 'localhost:28500');
    assert.equal(loadConfig({ env: { CONSUL_HOST: 'localhost' } }).consulAddr, 'localhost:8500');
    assert.equal(loadConfig({ env: {} }).consulAddr, undefined);
    assert.equal(consulBaseUrl('localhost:8500'), 'http://localhost:8500');
    assert.equal(consulBaseUrl('https://consul:8501/'), 'https://consul:8501');
  });
});
