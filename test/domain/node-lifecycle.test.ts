// The record's rules without a database: what each write does to the record it finds, and the quota place.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { judgeHeartbeat, judgeRegistration, isOutcome, placeNeeds, planWrite, takePlace, type NodeWrite, type WriteOutcome, type WritePlan } from '../../src/domain/node-lifecycle.js';
import { contentHash, fromDagi, recordFrom, type NamespacePlaces, type NodeRecord, type Registration } from '../../src/domain/node.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const iso = (ms: number): string => new Date(ms).toISOString();

function reg(nodeId: string, overrides: Partial<Registration> = {}): Registration {
  return { ...fromDagi({ node_id: nodeId, hostname: `${nodeId}.local`, role: 'worker', labels: ['a'] }, { leaseTtlMs: 30_000 }), ...overrides };
}

function stored(registration: Registration, overrides: Partial<NodeRecord> = {}): NodeRecord {
  return { ...recordFrom(registration, { status: 'online', registered_at: iso(T0), updated_at: iso(T0), last_heartbeat: iso(T0), removed_at: null, removal_reason: null }), ...overrides };
}

function plan(result: WritePlan | WriteOutcome): WritePlan {
  assert.ok(!isOutcome(result), `expected a change, got ${JSON.stringify(result)}`);
  return result;
}

function outcome(result: WritePlan | WriteOutcome): WriteOutcome {
  assert.ok(isOutcome(result), `expected an outcome, got a plan of ${JSON.stringify(result)}`);
  return result;
}

function places(total: number, byType: Record<string, number>): NamespacePlaces {
  return { total, byType: new Map(Object.entries(byType)) };
}

describe('judgeRegistration', () => {
  it('refuses an older incarnation, whatever the record holds', () => {
    const existing = stored(reg('n', { incarnation: 5 }), { status: 'offline' });
    const judged = judgeRegistration(existing, reg('n', { incarnation: 4 }));
    assert.equal(judged?.status, 'rejected');
    assert.equal(judged?.status === 'rejected' && judged.error.code, 'STALE_INCARNATION');
  });

  it('finds the same content of the same incarnation unchanged, with the keys of its documents in another order too', () => {
    const existing = stored(reg('n', { capabilities: { gpu: true, cores: 8 } }));
    assert.equal(judgeRegistration(existing, reg('n', { capabilities: { gpu: true, cores: 8 } }))?.status, 'unchanged');
    const reordered = reg('n', { capabilities: { cores: 8, gpu: true } });
    assert.notEqual(contentHash(reordered), existing.content_hash, 'the hash alone tells them apart');
    const judged = judgeRegistration(existing, reordered);
    assert.equal(judged?.status, 'unchanged');
    assert.equal(judged?.status === 'unchanged' && judged.node, existing);
  });

  it('writes changed content, a newer incarnation, a first registration, and a node back from offline or removal', () => {
    const existing = stored(reg('n'));
    assert.equal(judgeRegistration(existing, reg('n', { labels: ['b'] })), null);
    assert.equal(judgeRegistration(existing, reg('n', { incarnation: 1 })), null);
    assert.equal(judgeRegistration(undefined, reg('n')), null);
    assert.equal(judgeRegistration(stored(reg('n'), { status: 'offline' }), reg('n')), null);
    assert.equal(judgeRegistration(stored(reg('n'), { status: 'removed' }), reg('n')), null);
  });
});

describe('planWrite: register', () => {
  it('adds an unknown node, online, registered now', () => {
    const added = plan(planWrite({ kind: 'register', registration: reg('n') }, undefined, undefined, T0 + 1000));
    assert.equal(added.changeType, 'added');
    assert.deepEqual(added.fields, []);
    assert.equal(added.record.status, 'online');
    assert.equal(added.record.registered_at, iso(T0 + 1000));
    assert.equal(added.record.content_hash, contentHash(reg('n')));
  });

  it('updates a live node with the fields that changed, keeping when it registered', () => {
    const updated = plan(planWrite({ kind: 'register', registration: reg('n', { labels: ['b'], capabilities: { gpu: true } }) }, stored(reg('n')), undefined, T0 + 1000));
    assert.equal(updated.changeType, 'updated');
    assert.deepEqual([...updated.fields].sort(), ['capabilities', 'labels']);
    assert.equal(updated.record.registered_at, iso(T0));
    assert.equal(updated.record.updated_at, iso(T0 + 1000));
    assert.equal(updated.record.last_heartbeat, iso(T0 + 1000));
  });

  it('records a restart as an update of the incarnation only', () => {
    const restart = plan(planWrite({ kind: 'register', registration: reg('n', { incarnation: 300 }) }, stored(reg('n', { incarnation: 200 })), undefined, T0));
    assert.equal(restart.changeType, 'updated');
    assert.deepEqual(restart.fields, ['incarnation']);
  });

  it('adds again a node that left, clearing why it left', () => {
    const back = plan(planWrite({ kind: 'register', registration: reg('n') }, stored(reg('n'), { status: 'removed', removed_at: iso(T0), removal_reason: 'graceful_shutdown' }), undefined, T0 + 5000));
    assert.equal(back.changeType, 'added');
    assert.equal(back.record.registered_at, iso(T0 + 5000));
    assert.equal(back.record.removed_at, null);
    assert.equal(back.record.removal_reason, null);
  });

  it('refuses a stale registration and leaves identical content unchanged', () => {
    const stale = outcome(planWrite({ kind: 'register', registration: reg('n', { incarnation: 1 }) }, stored(reg('n', { incarnation: 2 })), undefined, T0));
    assert.equal(stale.status === 'rejected' && stale.error.code, 'STALE_INCARNATION');
    assert.equal(outcome(planWrite({ kind: 'register', registration: reg('n') }, stored(reg('n')), undefined, T0)).status, 'unchanged');
  });
});

describe('planWrite: deregister', () => {
  const write = (incarnation?: number): NodeWrite => ({ kind: 'deregister', namespace: 'default', node_id: 'n', reason: 'graceful_shutdown', ...(incarnation === undefined ? {} : { incarnation }) });

  it('removes a node softly, with the reason', () => {
    const removed = plan(planWrite(write(), stored(reg('n')), undefined, T0 + 5000));
    assert.equal(removed.changeType, 'removed');
    assert.deepEqual(removed.fields, ['status']);
    assert.equal(removed.reason, 'graceful_shutdown');
    assert.equal(removed.record.status, 'removed');
    assert.equal(removed.record.removed_at, iso(T0 + 5000));
  });

  it('keeps when an offline node left, removing it', () => {
    const removed = plan(planWrite(write(), stored(reg('n'), { status: 'offline', removed_at: iso(T0), removal_reason: 'lease_expired' }), undefined, T0 + 5000));
    assert.equal(removed.record.removed_at, iso(T0));
    assert.equal(removed.record.removal_reason, 'graceful_shutdown');
  });

  it('is idempotent, refuses unknown nodes and tombstones of an older incarnation', () => {
    assert.equal(outcome(planWrite(write(), stored(reg('n'), { status: 'removed' }), undefined, T0)).status, 'unchanged');
    const unknown = outcome(planWrite(write(), undefined, undefined, T0));
    assert.equal(unknown.status === 'rejected' && unknown.error.code, 'NODE_NOT_FOUND');
    const stale = outcome(planWrite(write(1), stored(reg('n', { incarnation: 2 })), undefined, T0));
    assert.equal(stale.status === 'rejected' && stale.error.code, 'STALE_INCARNATION');
    assert.equal(plan(planWrite(write(2), stored(reg('n', { incarnation: 2 })), undefined, T0)).changeType, 'removed');
  });
});

describe('planWrite: expire', () => {
  const write = (graceFromMs = 0, incarnation = 0): NodeWrite => ({ kind: 'expire', namespace: 'default', node_id: 'n', incarnation, graceFromMs });

  it('takes a lapsed lease offline, keeping its last heartbeat', () => {
    const expired = plan(planWrite(write(), stored(reg('n')), T0 + 1000, T0 + 31_000));
    assert.equal(expired.changeType, 'removed');
    assert.equal(expired.reason, 'lease_expired');
    assert.equal(expired.record.status, 'offline');
    assert.equal(expired.record.removal_reason, 'lease_expired');
    assert.equal(expired.record.removed_at, iso(T0 + 31_000));
    assert.equal(expired.record.last_heartbeat, iso(T0 + 1000));
  });

  it('leaves a lease renewed in time, or within a full TTL of the grace start', () => {
    assert.equal(outcome(planWrite(write(), stored(reg('n')), T0 + 10_000, T0 + 31_000)).status, 'unchanged', 'the lease was renewed');
    assert.equal(outcome(planWrite(write(T0 + 10_000), stored(reg('n')), undefined, T0 + 31_000)).status, 'unchanged', 'the grace start');
    assert.equal(plan(planWrite(write(), stored(reg('n')), undefined, T0 + 30_000)).changeType, 'removed', 'at the TTL exactly');
  });

  it('leaves other incarnations and nodes not online; refuses unknown nodes', () => {
    assert.equal(outcome(planWrite(write(0, 1), stored(reg('n')), undefined, T0 + 60_000)).status, 'unchanged');
    assert.equal(outcome(planWrite(write(), stored(reg('n'), { status: 'offline' }), undefined, T0 + 60_000)).status, 'unchanged');
    const unknown = outcome(planWrite(write(), undefined, undefined, T0 + 60_000));
    assert.equal(unknown.status === 'rejected' && unknown.error.code, 'NODE_NOT_FOUND');
  });
});

describe('placeNeeds and takePlace', () => {
  const register = (registration: Registration, max_nodes: number | null, max_nodes_of_type: number | null = null): NodeWrite => ({
    kind: 'register',
    registration,
    quota: { max_nodes, max_nodes_of_type },
  });
  const after = (registration: Registration): NodeRecord => stored(registration);

  it('counts online and offline records, not removed ones', () => {
    assert.deepEqual(placeNeeds(undefined, 'w'), { addsNode: true, addsType: true });
    assert.deepEqual(placeNeeds(stored(reg('n', { node_type: 'w' })), 'w'), { addsNode: false, addsType: false });
    assert.deepEqual(placeNeeds(stored(reg('n', { node_type: 'w' }), { status: 'offline' }), 'w'), { addsNode: false, addsType: false });
    assert.deepEqual(placeNeeds(stored(reg('n', { node_type: 'w' }), { status: 'removed' }), 'w'), { addsNode: true, addsType: true });
    assert.deepEqual(placeNeeds(stored(reg('n', { node_type: 'w' })), 'x'), { addsNode: false, addsType: true });
  });

  it('refuses a new node when the namespace is full, and takes the place when it is not', () => {
    const full = places(2, { w: 2 });
    const refused = takePlace(full, register(reg('new', { node_type: 'w' }), 2), undefined, after(reg('new', { node_type: 'w' })));
    assert.equal(refused?.code, 'QUOTA_EXCEEDED');
    assert.equal(refused?.details?.quota, 'max_nodes');
    assert.equal(full.total, 2, 'a refusal moves no count');
    const room = places(1, { w: 1 });
    assert.equal(takePlace(room, register(reg('new', { node_type: 'w' }), 2), undefined, after(reg('new', { node_type: 'w' }))), null);
    assert.equal(room.total, 2);
    assert.equal(room.byType.get('w'), 2);
  });

  it('lets a counted node update under a full quota, and counts a change of node_type against the type only', () => {
    const full = places(2, { w: 1, x: 1 });
    const before = stored(reg('n', { node_type: 'w' }));
    assert.equal(takePlace(full, register(reg('n', { node_type: 'w', labels: ['b'] }), 2, 1), before, after(reg('n', { node_type: 'w', labels: ['b'] }))), null);
    const typeFull = takePlace(full, register(reg('n', { node_type: 'x' }), 2, 1), before, after(reg('n', { node_type: 'x' })));
    assert.equal(typeFull?.details?.quota, 'max_nodes_per_type');
    const roomy = places(2, { w: 1, x: 1 });
    assert.equal(takePlace(roomy, register(reg('n', { node_type: 'x' }), 2, 2), before, after(reg('n', { node_type: 'x' }))), null);
    assert.equal(roomy.total, 2, 'the node keeps its one place');
    assert.deepEqual(Object.fromEntries(roomy.byType), { w: 0, x: 2 });
  });

  it('frees the place of a node that leaves, for a later write of the same batch', () => {
    const full = places(1, { w: 1 });
    const gone = stored(reg('old', { node_type: 'w' }));
    assert.equal(takePlace(full, { kind: 'deregister', namespace: 'default', node_id: 'old', reason: 'graceful_shutdown' }, gone, { ...gone, status: 'removed' }), null);
    assert.equal(full.total, 0);
    assert.equal(takePlace(full, register(reg('new', { node_type: 'w' }), 1), undefined, after(reg('new', { node_type: 'w' }))), null);
    assert.equal(full.total, 1);
  });

  it('counts without a quota, and does nothing for a namespace not counted', () => {
    const counted = places(5, {});
    assert.equal(takePlace(counted, { kind: 'register', registration: reg('new') }, undefined, after(reg('new'))), null);
    assert.equal(counted.total, 6);
    assert.equal(takePlace(undefined, register(reg('new'), 0), undefined, after(reg('new'))), null);
  });
});

describe('judgeHeartbeat', () => {
  const beat = (overrides: Partial<Parameters<typeof judgeHeartbeat>[1]> = {}): Parameters<typeof judgeHeartbeat>[1] => ({ namespace: 'default', node_id: 'n', ...overrides });

  it('refuses unknown and removed nodes, older incarnations, and asks offline or restarted nodes to register', () => {
    const unknown = judgeHeartbeat(undefined, beat());
    assert.equal(unknown.status === 'rejected' && unknown.outcome, 'unknown_node');
    const removed = judgeHeartbeat(stored(reg('n'), { status: 'removed' }), beat());
    assert.equal(removed.status === 'rejected' && removed.error.code, 'NODE_NOT_FOUND');
    const stale = judgeHeartbeat(stored(reg('n', { incarnation: 2 })), beat({ incarnation: 1 }));
    assert.equal(stale.status === 'rejected' && stale.outcome, 'stale');
    assert.equal(stale.status === 'rejected' && stale.error.code, 'STALE_INCARNATION');
    const offline = judgeHeartbeat(stored(reg('n'), { status: 'offline', removal_reason: 'lease_expired' }), beat());
    assert.equal(offline.status === 'rejected' && offline.error.code, 'REGISTRATION_REQUIRED');
    const restarted = judgeHeartbeat(stored(reg('n', { incarnation: 2 })), beat({ incarnation: 3 }));
    assert.equal(restarted.status === 'rejected' && restarted.outcome, 'registration_required');
  });

  it('renews a live node, and writes a change of health as a registration of the same content', () => {
    const live = stored(reg('n', { health_status: 'healthy' }));
    assert.deepEqual(judgeHeartbeat(live, beat({ health_status: 'healthy' })), { status: 'renew', node: live });
    const changed = judgeHeartbeat(live, beat({ health_status: 'degraded' }));
    assert.equal(changed.status, 'write');
    if (changed.status !== 'write') return;
    assert.equal(changed.registration.reason, 'health_change');
    assert.equal(changed.registration.health_status, 'degraded');
    const written = plan(planWrite({ kind: 'register', registration: changed.registration }, live, undefined, T0 + 1000));
    assert.deepEqual(written.fields, ['health_status']);
  });
});
