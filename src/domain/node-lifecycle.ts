// The record's rules: what a registration, a heartbeat, a deregistration or a lease expiry does to
// the record it finds, and whether a new node takes a place under its namespace's quotas. Pure: the
// engine asks them against its live view (to answer from memory), the store again against the rows
// it locked (to decide); both call these functions, so the two can never disagree.
import { RollcallError } from './errors.js';
import {
  changedFields,
  contentHash,
  nodeNotFound,
  quotaExceeded,
  recordFrom,
  shiftPlaces,
  staleIncarnation,
  type ChangeType,
  type HealthStatus,
  type NamespacePlaces,
  type NodeRecord,
  type Registration,
  type TopologyChange,
} from './node.js';

/**
 * Quota limits a registration is held to. The store checks them again in the write's transaction,
 * under a lock per namespace, so instances sharing the database cannot overshoot together.
 */
export interface WriteQuota {
  max_nodes: number | null;
  max_nodes_of_type: number | null;
}

export type NodeWrite =
  | { kind: 'register'; registration: Registration; quota?: WriteQuota }
  | { kind: 'deregister'; namespace: string; node_id: string; reason: string; incarnation?: number }
  /** Takes a node offline if, checked again inside the transaction, its lease has lapsed. */
  | { kind: 'expire'; namespace: string; node_id: string; incarnation: number; graceFromMs: number };

export type WriteOutcome = { status: 'changed'; change: TopologyChange } | { status: 'unchanged'; node: NodeRecord } | { status: 'rejected'; error: RollcallError };

/** A write that changes its record: the record it leaves and the change that says so. */
export interface WritePlan {
  record: NodeRecord;
  changeType: ChangeType;
  fields: string[];
  reason: string;
}

/**
 * A registration against the record found: an older incarnation is refused (it never overwrites a
 * newer one); the same incarnation of an online node with the same content (the same hash, or the
 * same documents with their keys in another order) changes nothing and is a heartbeat. Null: it writes.
 */
export function judgeRegistration(existing: NodeRecord | undefined, registration: Registration): Extract<WriteOutcome, { status: 'rejected' | 'unchanged' }> | null {
  if (existing && registration.incarnation < existing.incarnation) {
    return { status: 'rejected', error: staleIncarnation('Registration', registration.node_id, registration.incarnation, existing.incarnation) };
  }
  if (existing?.status === 'online' && existing.incarnation === registration.incarnation) {
    if (existing.content_hash === contentHash(registration) || changedFields(existing, registration).length === 0) return { status: 'unchanged', node: existing };
  }
  return null;
}

/**
 * Decides what one write does to the record it finds (`existing`), at `nowMs`; `leaseHeartbeatMs`
 * is the lease's last renewal when the store keeps it apart from the record. An outcome when the
 * write changes nothing or is refused, else the plan of the change.
 */
export function planWrite(write: NodeWrite, existing: NodeRecord | undefined, leaseHeartbeatMs: number | undefined, nowMs: number): WritePlan | WriteOutcome {
  const nowIso = new Date(nowMs).toISOString();
  switch (write.kind) {
    case 'register': {
      const reg = write.registration;
      const judged = judgeRegistration(existing, reg);
      if (judged) return judged;
      const live = existing?.status === 'online';
      const record = recordFrom(reg, {
        status: 'online',
        registered_at: live ? existing.registered_at : nowIso,
        updated_at: nowIso,
        last_heartbeat: nowIso,
        removed_at: null,
        removal_reason: null,
      });
      return live ? { record, changeType: 'updated', fields: changedFields(existing, reg), reason: reg.reason } : { record, changeType: 'added', fields: [], reason: reg.reason };
    }
    case 'deregister': {
      if (!existing) return { status: 'rejected', error: nodeNotFound(write.namespace, write.node_id) };
      if (existing.status === 'removed') return { status: 'unchanged', node: existing };
      if (write.incarnation !== undefined && write.incarnation < existing.incarnation) {
        return { status: 'rejected', error: staleIncarnation('Tombstone', write.node_id, write.incarnation, existing.incarnation) };
      }
      const record: NodeRecord = {
        ...existing,
        status: 'removed',
        updated_at: nowIso,
        removed_at: existing.removed_at ?? nowIso,
        removal_reason: write.reason,
      };
      return { record, changeType: 'removed', fields: ['status'], reason: write.reason };
    }
    case 'expire': {
      if (!existing || existing.status !== 'online' || existing.incarnation !== write.incarnation) {
        return existing ? { status: 'unchanged', node: existing } : { status: 'rejected', error: nodeNotFound(write.namespace, write.node_id) };
      }
      const heartbeat = Math.max(leaseHeartbeatMs ?? Date.parse(existing.last_heartbeat), write.graceFromMs);
      if (heartbeat + existing.lease_ttl_ms > nowMs) return { status: 'unchanged', node: existing };
      const record: NodeRecord = {
        ...existing,
        status: 'offline',
        updated_at: nowIso,
        last_heartbeat: new Date(leaseHeartbeatMs ?? Date.parse(existing.last_heartbeat)).toISOString(),
        removed_at: nowIso,
        removal_reason: 'lease_expired',
      };
      return { record, changeType: 'removed', fields: ['status'], reason: 'lease_expired' };
    }
  }
}

/** True when `planWrite` returned an outcome (nothing to write) rather than a plan. */
export function isOutcome(plan: WritePlan | WriteOutcome): plan is WriteOutcome {
  return 'status' in plan;
}

/**
 * Whether a registration of `nodeType` takes a new place, given the record found: online and
 * offline records hold a place, removed ones don't; a node already counted takes no second place in
 * the namespace, and one that keeps its node_type none in its type either.
 */
export function placeNeeds(existing: NodeRecord | undefined, nodeType: string): { addsNode: boolean; addsType: boolean } {
  const counted = existing !== undefined && existing.status !== 'removed';
  return { addsNode: !counted, addsType: !counted || existing.node_type !== nodeType };
}

/**
 * Counts a planned change (`before` → `after`) against its namespace's places: a registration held
 * to a quota that has no room is refused (the error), anything else moves the counts and goes
 * through (null). `places` undefined: the namespace is not counted (no write of it needs a place).
 */
export function takePlace(places: NamespacePlaces | undefined, write: NodeWrite, before: NodeRecord | undefined, after: NodeRecord): RollcallError | null {
  if (!places) return null;
  const counted = before !== undefined && before.status !== 'removed';
  if (write.kind === 'register') {
    const { addsNode, addsType } = placeNeeds(before, after.node_type);
    const quota = write.quota;
    if (quota) {
      if (addsNode && quota.max_nodes !== null && places.total >= quota.max_nodes) return quotaExceeded(write.registration, 'max_nodes', quota.max_nodes, places.total);
      const ofType = places.byType.get(after.node_type) ?? 0;
      if (addsType && quota.max_nodes_of_type !== null && ofType >= quota.max_nodes_of_type) return quotaExceeded(write.registration, 'max_nodes_per_type', quota.max_nodes_of_type, ofType);
    }
    if (addsType) {
      shiftPlaces(places, after.node_type, 1, addsNode);
      if (counted) shiftPlaces(places, before.node_type, -1, false);
    }
    return null;
  }
  if (counted && after.status === 'removed') shiftPlaces(places, before.node_type, -1);
  return null;
}

/** A heartbeat as the rules see it. */
export interface HeartbeatSignal {
  namespace: string;
  node_id: string;
  incarnation?: number;
  health_status?: HealthStatus;
}

export type HeartbeatVerdict =
  /** Refused: the node is unknown, the heartbeat is from an older incarnation, or the node must register (again) first. */
  | { status: 'rejected'; outcome: 'unknown_node' | 'stale' | 'registration_required'; error: RollcallError }
  /** The lease is renewed; the record is unchanged. */
  | { status: 'renew'; node: NodeRecord }
  /** The heartbeat changes the record's content (its health): it is written as this registration, which renews the lease too. */
  | { status: 'write'; node: NodeRecord; registration: Registration };

/** What a heartbeat does to the record it finds. */
export function judgeHeartbeat(live: NodeRecord | undefined, input: HeartbeatSignal): HeartbeatVerdict {
  if (!live || live.status === 'removed') return { status: 'rejected', outcome: 'unknown_node', error: nodeNotFound(input.namespace, input.node_id) };
  if (input.incarnation !== undefined && input.incarnation < live.incarnation) {
    return { status: 'rejected', outcome: 'stale', error: staleIncarnation('Heartbeat', input.node_id, input.incarnation, live.incarnation) };
  }
  if (live.status !== 'online' || (input.incarnation !== undefined && input.incarnation > live.incarnation)) {
    const error = new RollcallError(
      'REGISTRATION_REQUIRED',
      live.status !== 'online'
        ? `Node ${input.node_id} is ${live.status} (${live.removal_reason ?? 'unknown reason'}); register it again.`
        : `Node ${input.node_id} restarted (incarnation ${input.incarnation}); register the new incarnation first.`,
      { details: { node_id: input.node_id, status: live.status, current_incarnation: live.incarnation } },
    );
    return { status: 'rejected', outcome: 'registration_required', error };
  }
  if (input.health_status !== undefined && input.health_status !== live.health_status) {
    const { status: _s, content_hash: _h, registered_at: _r, updated_at: _u, last_heartbeat: _l, removed_at: _ra, removal_reason: _rr, ...fields } = live;
    return { status: 'write', node: live, registration: { ...fields, health_status: input.health_status, reason: 'health_change' } };
  }
  return { status: 'renew', node: live };
}
