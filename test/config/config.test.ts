// Configuration: precedence of sources, the seeds' variables, and errors that name the field.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig, redactUrl, topicPrefixOf } from '../../src/config/config.js';
import { topicNames } from '../../src/domain/events.js';
import { isRollcallError } from '../../src/domain/errors.js';

function configError(run: () => unknown): { message: string; field: unknown } {
  try {
    run();
  } catch (error) {
    assert.ok(isRollcallError(error));
    assert.equal(error.code, 'CONFIG_INVALID');
    return { message: error.message, field: error.details?.field };
  }
  throw new Error('expected a configuration error');
}

describe('configuration', () => {
  it('has documented defaults: loopback, port 9205, embedded database, 90 s leases', () => {
    const config = loadConfig({ env: {} });
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, 9205);
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.dataDir, '.rollcall/data');
    assert.equal(config.leaseTtlSeconds, 90);
    assert.equal(config.retentionHours, 24);
  });

  it('layers file < environment < flags', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rollcall-config-'));
    const file = join(dir, 'rollcall.json');
    await writeFile(file, JSON.stringify({ port: 1111, leaseTtlSeconds: 10, namespace: 'fromfile' }));
    const config = loadConfig({ env: { ROLLCALL_PORT: '2222', ROLLCALL_LEASE_TTL_SECONDS: '20' }, file, flags: { port: 3333, host: undefined } });
    await rm(dir, { recursive: true });
    assert.equal(config.port, 3333);
    assert.equal(config.leaseTtlSeconds, 20);
    assert.equal(config.namespace, 'fromfile');
    assert.equal(config.host, '127.0.0.1');
  });

  it('honours the seeds variables', () => {
    const config = loadConfig({
      env: {
        POSTGRES_HOST: 'db.internal',
        POSTGRES_PORT: '6543',
        POSTGRES_DB: 'omninode_bridge',
        POSTGRES_USER: 'bridge',
        POSTGRES_PASSWORD: 'p@ss/word',
        NODE_TTL_HOURS: '48',
        CLEANUP_INTERVAL_HOURS: '2',
      },
    });
    const url = new URL(config.databaseUrl as string);
    assert.equal(url.hostname, 'db.internal');
    assert.equal(url.port, '6543');
    assert.equal(url.pathname, '/omninode_bridge');
    assert.equal(url.username, 'bridge');
    assert.equal(decodeURIComponent(url.password), 'p@ss/word');
    assert.equal(config.retentionHours, 48);
    assert.equal(config.cleanupIntervalHours, 2);
    assert.equal(loadConfig({ env: { POSTGRES_HOST: 'x', DATABASE_URL: 'postgres://a@b/c' } }).databaseUrl, 'postgres://a@b/c');
  });

  it("honours the seeds' Kafka variables: broker URL and the environment as topic prefix", () => {
    const embedded = loadConfig({ env: {} });
    assert.equal(embedded.kafkaBrokers, undefined, 'no Kafka unless asked: the in-process bus');
    assert.equal(topicNames(topicPrefixOf(embedded)).introspection, 'dev.omninode_bridge.onex.evt.node-introspection.v1');
    const config = loadConfig({ env: { KAFKA_BROKER_URL: 'kafka-1:9092,kafka-2:9092', KAFKA_ENVIRONMENT: 'prod', ROLLCALL_KAFKA_PARTITIONS: '12', ROLLCALL_KAFKA_CREATE_TOPICS: 'false' } });
    assert.equal(config.kafkaBrokers, 'kafka-1:9092,kafka-2:9092');
    assert.equal(config.kafkaPartitions, 12);
    assert.equal(config.kafkaCreateTopics, false);
    assert.equal(config.kafkaGroupId, 'bridge-registry-group');
    const topics = topicNames(topicPrefixOf(config));
    assert.deepEqual(Object.values(topics), [
      'prod.omninode_bridge.onex.evt.node-introspection.v1',
      'prod.omninode_bridge.onex.evt.node-heartbeat.v1',
      'prod.omninode_bridge.onex.evt.node-tombstone.v1',
      'prod.omninode_bridge.onex.evt.registry-request-introspection.v1',
      'prod.omninode_bridge.onex.evt.topology-diff.v1',
      'prod.omninode_bridge.onex.evt.dead-letter.v1',
    ]);
    assert.equal(topicPrefixOf(loadConfig({ env: { KAFKA_ENVIRONMENT: 'prod', ROLLCALL_KAFKA_TOPIC_PREFIX: 'acme.registry' } })), 'acme.registry');
    assert.equal(configError(() => loadConfig({ env: { KAFKA_ENVIRONMENT: 'has space' } })).field, 'kafkaEnvironment');
  });

  it('reads the namespaces with Kafka topics of their own, comma separated, and refuses a bad one by name', () => {
    assert.deepEqual(loadConfig({ env: {} }).kafkaNamespaceTopics, []);
    assert.deepEqual(loadConfig({ env: { ROLLCALL_KAFKA_NAMESPACE_TOPICS: 'alpha, beta,' } }).kafkaNamespaceTopics, ['alpha', 'beta']);
    assert.deepEqual(loadConfig({ env: {}, flags: { kafkaNamespaceTopics: ['gamma'] } }).kafkaNamespaceTopics, ['gamma']);
    for (const bad of ['alpha,Not_A_Namespace', '-beta', 'default']) {
      const error = configError(() => loadConfig({ env: { ROLLCALL_KAFKA_NAMESPACE_TOPICS: bad } }));
      assert.equal(error.field, 'kafkaNamespaceTopics', bad);
      assert.match(error.message, /kafkaNamespaceTopics/);
    }
    const long = configError(() => loadConfig({ env: { ROLLCALL_KAFKA_TOPIC_PREFIX: 'p'.repeat(180), ROLLCALL_KAFKA_NAMESPACE_TOPICS: 'n'.repeat(60) } }));
    assert.equal(long.field, 'kafkaNamespaceTopics', 'topic names longer than Kafka allows');
  });

  it('serves DNS for the default namespace unless told which, comma separated (* for every one), and refuses a bad one by name', () => {
    assert.deepEqual(loadConfig({ env: {} }).dnsNamespaces, ['default']);
    assert.deepEqual(loadConfig({ env: { ROLLCALL_NAMESPACE: 'prod' } }).dnsNamespaces, ['prod'], 'the default namespace, whatever it is');
    assert.deepEqual(loadConfig({ env: { ROLLCALL_DNS_NAMESPACES: 'default, beta,' } }).dnsNamespaces, ['default', 'beta']);
    assert.deepEqual(loadConfig({ env: { ROLLCALL_DNS_NAMESPACES: '*' } }).dnsNamespaces, ['*']);
    assert.deepEqual(loadConfig({ env: {}, flags: { dnsNamespaces: ['gamma'] } }).dnsNamespaces, ['gamma']);
    for (const bad of ['alpha,Not_A_Namespace', ',', 'default,**']) {
      const error = configError(() => loadConfig({ env: { ROLLCALL_DNS_NAMESPACES: bad } }));
      assert.equal(error.field, 'dnsNamespaces', bad);
      assert.match(error.message, /dnsNamespaces/);
    }
  });

  it('names the bad field and where it came from', () => {
    const port = configError(() => loadConfig({ env: {}, flags: { port: 99999 } }));
    assert.equal(port.field, 'port');
    assert.match(port.message, /"port" from flags/);
    const ttl = configError(() => loadConfig({ env: { ROLLCALL_LEASE_TTL_SECONDS: 'abc' } }));
    assert.equal(ttl.field, 'leaseTtlSeconds');
    assert.match(ttl.message, /environment/);
    const level = configError(() => loadConfig({ env: { ROLLCALL_LOG_LEVEL: 'loud' } }));
    assert.equal(level.field, 'logLevel');
    const unknown = configError(() => loadConfig({ env: {}, flags: { nope: 1 } as never }));
    assert.equal(unknown.field, 'nope');
  });

  it('never echoes a database URL (it may hold a password)', () => {
    const bad = configError(() => loadConfig({ env: { ROLLCALL_DATABASE_URL: 'not a url with s3cret' } }));
    assert.equal(bad.field, 'databaseUrl');
    assert.ok(!bad.message.includes('s3cret'));
    assert.equal(redactUrl('postgres://u:s3cret@h:5432/d'), 'postgres://u:***@h:5432/d');
  });

  it('asks for client certificates by default only with TLS and a trust bundle, and refuses mTLS without them', () => {
    const tls = { ROLLCALL_TLS_CERT_FILE: '/tls/server.pem', ROLLCALL_TLS_KEY_FILE: '/tls/server.key' };
    assert.equal(loadConfig({ env: {} }).tlsClientAuth, 'off');
    assert.equal(loadConfig({ env: tls }).tlsClientAuth, 'off');
    assert.equal(loadConfig({ env: { ROLLCALL_CA_CERT_FILE: '/ca/ca.pem', ROLLCALL_CA_KEY_FILE: '/ca/ca.key' } }).tlsClientAuth, 'off');
    assert.equal(loadConfig({ env: { ...tls, ROLLCALL_CA_CERT_FILE: '/ca/ca.pem', ROLLCALL_CA_KEY_FILE: '/ca/ca.key' } }).tlsClientAuth, 'optional');
    assert.equal(loadConfig({ env: { ...tls, ROLLCALL_TRUST_BUNDLE_FILE: '/ca/bundle.pem' } }).tlsClientAuth, 'optional');
    assert.equal(loadConfig({ env: { ...tls, ROLLCALL_TRUST_BUNDLE_FILE: '/ca/bundle.pem', ROLLCALL_TLS_CLIENT_AUTH: 'require' } }).tlsClientAuth, 'require');
    assert.equal(loadConfig({ env: { ...tls, ROLLCALL_TRUST_BUNDLE_FILE: '/ca/bundle.pem', ROLLCALL_TLS_CLIENT_AUTH: 'off' } }).tlsClientAuth, 'off');
    const noTls = configError(() => loadConfig({ env: { ROLLCALL_TRUST_BUNDLE_FILE: '/ca/bundle.pem', ROLLCALL_TLS_CLIENT_AUTH: 'require' } }));
    assert.equal(noTls.field, 'tlsClientAuth');
    assert.match(noTls.message, /"tlsClientAuth" from environment.*needs TLS/);
    const noBundle = configError(() => loadConfig({ env: tls, flags: { tlsClientAuth: 'optional' } }));
    assert.equal(noBundle.field, 'tlsClientAuth');
    assert.match(noBundle.message, /trust bundle/);
    assert.equal(configError(() => loadConfig({ env: { ROLLCALL_TLS_CLIENT_AUTH: 'sometimes' } })).field, 'tlsClientAuth');
  });

  it('refuses a config file that is not a JSON object, naming the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rollcall-config-'));
    const file = join(dir, 'bad.json');
    await writeFile(file, '[1,2]');
    assert.match(configError(() => loadConfig({ env: {}, file })).message, /bad\.json/);
    assert.match(configError(() => loadConfig({ env: {}, file: join(dir, 'missing.json') })).message, /Cannot read/);
    await rm(dir, { recursive: true });
  });

  it('scopes the Consul projection by namespace: off by default, or Consul Enterprise namespaces', () => {
    const defaults = loadConfig({ env: {} });
    assert.equal(defaults.consulNamespaces, 'off');
    assert.equal(defaults.consulNamespaceServiceName, undefined);
    const enterprise = loadConfig({ env: { ROLLCALL_CONSUL_NAMESPACES: 'enterprise', ROLLCALL_CONSUL_NAMESPACE_SERVICE_NAME: '{namespace}-{node_type}' } });
    assert.equal(enterprise.consulNamespaces, 'enterprise');
    assert.equal(enterprise.consulNamespaceServiceName, '{namespace}-{node_type}');
    assert.equal(configError(() => loadConfig({ env: { ROLLCALL_CONSUL_NAMESPACES: 'oss' } })).field, 'consulNamespaces');
  });
});
