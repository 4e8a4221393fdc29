// The model: both wire shapes become one registration; content hashing and changed fields.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseIntrospection } from '../../src/domain/introspection.js';
import { canonicalJson, jsonContains, jsonEqual } from '../../src/domain/json.js';
import { changedFields, contentHash, fromDagi, fromIntrospection, recordFrom } from '../../src/domain/node.js';
import { isRollcallError } from '../../src/domain/errors.js';

const defaults = { leaseTtlMs: 90_000 };

const seedIntrospection = {
  node_id: 'orchestrator-v1_0_0-abc123',
  node_name: 'NodeBridgeOrchestrator',
  node_type: 'orchestrator',
  node_version: '1.0.0',
  capabilities: { node_type: 'orchestrator', supported_operations: ['execute_orchestration'] },
  endpoints: { health: 'http://localhost:8080/health', api: 'http://localhost:8080' },
  configuration: { node_ttl_hours: 24, cleanup_interval_hours: 1 },
  current_state: { status: 'active', uptime_seconds: 3600, health_status: 'healthy' },
  metadata: { role: 'orchestrator', labels: ['gpu'], lease_ttl_seconds: 60 },
  introspection_timestamp: '2025-10-24T12:00:00Z',
  introspection_version: '2.0.0-optimized',
};

describe('JSON helpers', () => {
  it('serialises canonically whatever the key order', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [1, { f: 2, e: 1 }], c: null } }), canonicalJson({ a: { c: null, d: [1, { e: 1, f: 2 }] }, b: 1 }));
    assert.notEqual(canonicalJson({ a: [1, 2] }), canonicalJson({ a: [2, 1] }));
  });

  it('compares documents as their canonical serialisations do, whatever the key order', () => {
    assert.ok(jsonEqual({ b: 1, a: { d: [1, { f: 2, e: 1 }], c: null } }, { a: { c: null, d: [1, { e: 1, f: 2 }] }, b: 1 }));
    assert.ok(!jsonEqual({ a: [1, 2] }, { a: [2, 1] }));
    assert.ok(!jsonEqual({ a: 1 }, { a: 1, b: 2 }));
    assert.ok(jsonEqual({ a: 1, b: undefined }, { a: 1 }));
    assert.ok(!jsonEqual({ a: {} }, { a: [] }));
    // Any two JSON documents, equal or not, and a document against a copy with its keys reversed.
    const reversed = (value: unknown): unknown => {
      if (Array.isArray(value)) return value.map(reversed);
      if (value === null || typeof value !== 'object') return value;
      return Object.fromEntries(
        Object.entries(value)
          .reverse()
          .map(([key, item]) => [key, reversed(item)]),
      );
    };
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (a, b) => {
        assert.equal(jsonEqual(a, b), canonicalJson(a) === canonicalJson(b));
        assert.ok(jsonEqual(a, reversed(a)));
      }),
      { numRuns: 2000 },
    );
  });

  it('matches containment as PostgreSQL jsonb @> does', () => {
    const doc = { gpu: true, models: ['llama', 'mistral'], limits: { vram_gb: 24, cores: 8 } };
    assert.ok(jsonContains(doc, { gpu: true }));
    assert.ok(jsonContains(doc, { models: ['mistral'] }));
    assert.ok(jsonContains(doc, { limits: { vram_gb: 24 } }));
    assert.ok(jsonContains(doc, {}));
    assert.ok(!jsonContains(doc, { gpu: false }));
    assert.ok(!jsonContains(doc, { models: ['gpt'] }));
    assert.ok(!jsonContains(doc, { limits: { vram_gb: 48 } }));
    assert.ok(!jsonContains(doc, { missing: null }));
    assert.ok(!jsonContains({ a: 1 }, { a: '1' }));
  });
});

describe('registration shapes', () => {
  it('reads the seeds introspection payload, with role, labels, health and lease from it', () => {
    const reg = fromIntrospection(seedIntrospection, defaults);
    assert.equal(reg.namespace, 'default');
    assert.equal(reg.node_type, 'orchestrator');
    assert.equal(reg.role, 'orchestrator');
    assert.deepEqual(reg.labels, ['gpu']);
    assert.equal(reg.health_status, 'healthy');
    assert.equal(reg.lease_ttl_ms, 60_000);
    assert.equal(reg.incarnation, 0);
  });

  it('reads the DAGI registration and generates a node_id when absent', () => {
    const a = fromDagi({ hostname: 'test', ip: '192.168.1.1', role: 'test-node', labels: ['test'] }, defaults);
    const b = fromDagi({ hostname: 'test', role: 'test-node' }, defaults);
    assert.match(a.node_id, /^node-[0-9a-f-]{36}$/);
    assert.notEqual(a.node_id, b.node_id);
    assert.equal(a.role, 'test-node');
    assert.equal(a.ip, '192.168.1.1');
    assert.equal(a.lease_ttl_ms, 90_000);
    assert.equal(fromDagi({ hostname: 'h', role: 'r', namespace: 'lab', lease_ttl_seconds: 5 }, defaults).lease_ttl_ms, 5000);
  });

  it('accepts the payload bare or in an OnexEnvelopeV1, and refuses other event types', () => {
    const bare = parseIntrospection(seedIntrospection, defaults);
    assert.equal(bare.envelope, null);
    const wrapped = parseIntrospection(
      { envelope_version: '1.0', event_id: 'e1', event_type: 'NODE_INTROSPECTION', event_timestamp: '2025-10-03T10:00:00Z', source_node_id: 'x', correlation_id: 'c1', payload: seedIntrospection },
      defaults,
    );
    assert.equal(wrapped.envelope?.correlation_id, 'c1');
    assert.equal(contentHash(wrapped.registration), contentHash(bare.registration));
    assert.throws(
      () => parseIntrospection({ envelope_version: '1.0', event_id: 'e2', event_type: 'TOPOLOGY_DIFF', payload: seedIntrospection }, defaults),
      (error: unknown) => isRollcallError(error) && error.code === 'VALIDATION_FAILED' && /event_type/.test(error.message),
    );
  });

  it('refuses bad identifiers and types with the path of the fault', () => {
    for (const [body, path] of [
      [{ ...seedIntrospection, node_id: '' }, '/node_id'],
      [{ ...seedIntrospection, node_id: 'has space' }, '/node_id'],
      [{ ...seedIntrospection, node_id: 'x'.repeat(256) }, '/node_id'],
      [{ ...seedIntrospection, node_type: 42 }, '/node_type'],
      [{ ...seedIntrospection, capabilities: [] }, '/capabilities'],
      [{ ...seedIntrospection, namespace: 'UPPER' }, '/namespace'],
      [{ ...seedIntrospection, incarnation: -1 }, '/incarnation'],
    ] as const) {
      assert.throws(
        () => parseIntrospection(body, defaults),
        (error: unknown) => isRollcallError(error) && error.code === 'VALIDATION_FAILED' && JSON.stringify(error.details).includes(path),
        `expected a validation error at ${path}`,
      );
    }
  });
});

describe('content and changes', () => {
  it('ignores volatile state (uptime) but not the declared status', () => {
    const reg = fromIntrospection(seedIntrospection, defaults);
    const later = fromIntrospection({ ...seedIntrospection, current_state: { ...seedIntrospection.current_state, uptime_seconds: 7200 } }, defaults);
    assert.equal(contentHash(reg), contentHash(later));
    const draining = fromIntrospection({ ...seedIntrospection, current_state: { ...seedIntrospection.current_state, status: 'draining' } }, defaults);
    assert.notEqual(contentHash(reg), contentHash(draining));
  });

  it('names exactly the fields that changed', () => {
    const reg = fromIntrospection(seedIntrospection, defaults);
    const record = recordFrom(reg, { status: 'online', registered_at: '', updated_at: '', last_heartbeat: '', removed_at: null, removal_reason: null });
    const next = { ...reg, capabilities: { ...reg.capabilities, gpu: true }, endpoints: { health: 'http://other/health' }, incarnation: 5 };
    assert.deepEqual(changedFields(record, next), ['capabilities', 'endpoints', 'incarnation']);
    assert.deepEqual(changedFields(record, reg), []);
  });
});
