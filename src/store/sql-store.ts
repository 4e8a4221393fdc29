// The Store written once in SQL, over either driver (node-postgres or PGlite).
import { createHash, randomUUID } from 'node:crypto';
import type { JsonObject } from '../domain/json.js';
import { nodeKey, type ChangeType, type NamespacePlaces, type NodeRecord, type TopologyChange } from '../domain/node.js';
import { isOutcome, placeNeeds, planWrite, takePlace, type NodeWrite, type WriteOutcome } from '../domain/node-lifecycle.js';
import { migrate } from './migrate.js';
import { judgeWriteFailure, type WriteSubject } from './sql-errors.js';
import type { SqlClient, SqlExecutor } from './sql-client.js';
import type { ApiKeyRecord, ChangesPage, Duty, ExpiryCandidate, HeartbeatLogEntry, LeaseRenewal, Profile, Store, WriteFailure } from './store.js';
import type { AuditEntry, AuditQuery, NamespaceQuotas, PolicyVersion, StoredAuditEntry } from './store.js';
import type { CertificateRevocation, IssuedCertificate, JoinTokenRecord, JoinTokenUse } from './store.js';

const NOTIFY_CHANNEL = 'rollcall_topology';
const DUTY_LOCK_KEYS: Record<Duty, number> = { sweeper: 0x72630001, relay: 0x72630002, consul: 0x72630003 };

const RECORD_COLUMNS = `namespace, node_id, node_name, node_type, node_version, hostname, ip, role, labels,
  capabilities, endpoints, configuration, current_state, metadata, health_status, status, incarnation,
  lease_ttl_ms, content_hash, registered_at, updated_at, last_heartbeat, removed_at, removal_reason`;

/** Columns of a record inside the batch document, for jsonb_to_record. */
const RECORD_TYPE = `namespace text, node_id text, node_name text, node_type text, node_version text, hostname text,
  ip text, role text, labels jsonb, capabilities jsonb, endpoints jsonb, configuration jsonb, current_state jsonb,
  metadata jsonb, health_status text, status text, incarnation bigint, lease_ttl_ms integer, content_hash text,
  registered_at timestamptz, updated_at timestamptz, last_heartbeat timestamptz, removed_at timestamptz,
  removal_reason text`;

/** $1: {changes, latest: index of each node's last change}. Writes the records and their leases. */
const WRITE_RECORDS_SQL = `
  WITH batch AS (SELECT $1::jsonb AS doc),
  latest AS (
    SELECT x.* FROM batch, jsonb_array_elements(batch.doc -> 'latest') AS i(idx),
      LATERAL jsonb_to_record(batch.doc -> 'changes' -> (i.idx)::int -> 'node') AS x(${RECORD_TYPE})),
  records AS (
    INSERT INTO node_registrations (${RECORD_COLUMNS})
    SELECT namespace, node_id, node_name, node_type, node_version, hostname, ip, role,
           ARRAY(SELECT jsonb_array_elements_text(labels)), capabilities, endpoints, configuration, current_state,
           metadata, health_status, status, incarnation, lease_ttl_ms, content_hash, registered_at, updated_at,
           last_heartbeat, removed_at, removal_reason
    FROM latest
    ON CONFLICT (namespace, node_id) DO UPDATE SET
      node_name = excluded.node_name, node_type = excluded.node_type, node_version = excluded.node_version,
      hostname = excluded.hostname, ip = excluded.ip, role = excluded.role, labels = excluded.labels,
      capabilities = excluded.capabilities, endpoints = excluded.endpoints, configuration = excluded.configuration,
      current_state = excluded.current_state, metadata = excluded.metadata, health_status = excluded.health_status,
      status = excluded.status, incarnation = excluded.incarnation, lease_ttl_ms = excluded.lease_ttl_ms,
      content_hash = excluded.content_hash, registered_at = excluded.registered_at,
      updated_at = excluded.updated_at, last_heartbeat = excluded.last_heartbeat,
      removed_at = excluded.removed_at, removal_reason = excluded.removal_reason
    RETURNING 1)
  INSERT INTO node_leases (namespace, node_id, incarnation, ttl_ms, online, last_heartbeat)
  SELECT namespace, node_id, incarnation, lease_ttl_ms, status = 'online', last_heartbeat
  FROM latest WHERE (SELECT count(*) FROM records) >= 0
  ON CONFLICT (namespace, node_id) DO UPDATE SET incarnation = excluded.incarnation, ttl_ms = excluded.ttl_ms,
    online = excluded.online, last_heartbeat = excluded.last_heartbeat`;

/**
 * $1: the batch document; $2: how many changes; $3, $4: notify channel and this store's token.
 * Takes the versions and writes the change rows in one statement, so the version lock is held
 * for that statement and the commit only.
 */
const WRITE_CHANGES_SQL = `
  WITH state AS (UPDATE topology_state SET version = version + $2 WHERE id = 1 RETURNING version),
  changes AS (
    INSERT INTO topology_changes (version, namespace, node_id, change_type, changed_fields, reason, changed_at, node)
    SELECT (SELECT version FROM state) - $2 + c.ordinality, c.value ->> 'namespace', c.value ->> 'node_id',
           c.value ->> 'change_type', ARRAY(SELECT jsonb_array_elements_text(c.value -> 'changed_fields')),
           c.value ->> 'reason', (c.value ->> 'changed_at')::timestamptz, c.value -> 'node'
    FROM jsonb_array_elements($1::jsonb -> 'changes') WITH ORDINALITY AS c
    RETURNING 1)
  SELECT version, (SELECT count(*) FROM changes) AS changes,
         pg_notify($3, version || ':' || $4::text) AS notified
  FROM state`;

/** The writes of a failed transaction, as its error names them. */
function subjectOf(writes: NodeWrite[]): WriteSubject {
  const [only] = writes;
  if (writes.length !== 1 || !only) return { text: `a batch of ${writes.length} writes`, details: {} };
  const { namespace, node_id } = only.kind === 'register' ? only.registration : only;
  const what = only.kind === 'register' ? 'registration' : only.kind === 'deregister' ? 'deregistration' : 'lease expiry';
  return { text: `the ${what} of node ${node_id} in namespace ${namespace}`, details: { namespace, node_id } };
}

/** Advisory lock class of per-node write locks (the two-key form, apart from other locks). */
const NODE_LOCK_CLASS = 0x7263;
/** Quota checks of one namespace take turns across every instance sharing the database. */
const QUOTA_LOCK_CLASS = 0x7271;

/** A node's write lock key: 32 bits of a hash of its identity (a collision only serialises more). */
function keyLock(namespace: string, nodeId: string): number {
  return createHash('sha1').update(namespace).update('\u0000').update(nodeId).digest().readInt32BE(0);
}

/** A registration row as a driver returns it: BIGINT may come as a string, timestamps as Dates. */
interface NodeRow extends Omit<NodeRecord, 'health_status' | 'status' | 'incarnation' | 'registered_at' | 'updated_at' | 'last_heartbeat' | 'removed_at'> {
  health_status: string;
  status: string;
  incarnation: string | number;
  registered_at: Date | string;
  updated_at: Date | string;
  last_heartbeat: Date | string;
  removed_at: Date | string | null;
  lease_heartbeat_ms?: number | string | null;
}

function iso(value: Date | string): string {
  return (value instanceof Date ? value : new Date(value)).toISOString();
}

function toRecord(row: NodeRow): NodeRecord {
  const leaseMs = row.lease_heartbeat_ms == null ? null : Number(row.lease_heartbeat_ms);
  const lastHeartbeat = iso(row.last_heartbeat);
  return {
    namespace: row.namespace,
    node_id: row.node_id,
    node_name: row.node_name,
    node_type: row.node_type,
    node_version: row.node_version,
    hostname: row.hostname,
    ip: row.ip,
    role: row.role,
    labels: row.labels,
    capabilities: row.capabilities,
    endpoints: row.endpoints,
    configuration: row.configuration,
    current_state: row.current_state,
    metadata: row.metadata,
    health_status: row.health_status as NodeRecord['health_status'],
    status: row.status as NodeRecord['status'],
    incarnation: Number(row.incarnation),
    lease_ttl_ms: row.lease_ttl_ms,
    content_hash: row.content_hash,
    registered_at: iso(row.registered_at),
    updated_at: iso(row.updated_at),
    last_heartbeat: leaseMs !== null && leaseMs > Date.parse(lastHeartbeat) ? new Date(leaseMs).toISOString() : lastHeartbeat,
    removed_at: row.removed_at === null ? null : iso(row.removed_at),
    removal_reason: row.removal_reason,
  };
}

interface ChangeRow {
  version: string | number;
  namespace: string;
  node_id: string;
  change_type: ChangeType;
  changed_fields: string[];
  reason: string;
  changed_at: Date | string;
  node: NodeRecord;
}

function toChange(row: ChangeRow): TopologyChange {
  return {
    version: Number(row.version),
    namespace: row.namespace,
    node_id: row.node_id,
    change_type: row.change_type,
    changed_fields: row.changed_fields,
    reason: row.reason,
    changed_at: iso(row.changed_at),
    node: row.node,
  };
}

export class SqlStore implements Store {
  /** Marks this store's notifications, so it is not woken by its own commits. */
  private readonly instanceToken = randomUUID();

  constructor(private readonly client: SqlClient) {}

  get dialect(): 'postgres' | 'pglite' {
    return this.client.dialect;
  }

  async migrate(): Promise<void> {
    await migrate(this.client);
  }

  async applyWrites(writes: NodeWrite[], nowMs: number): Promise<WriteOutcome[]> {
    if (writes.length === 0) return [];
    const nowIso = new Date(nowMs).toISOString();
    const keys = writes.map((write) =>
      write.kind === 'register' ? { namespace: write.registration.namespace, node_id: write.registration.node_id } : { namespace: write.namespace, node_id: write.node_id },
    );
    return this.client.transaction(async (tx) => {
      // Writers of the same node serialise on its key lock, taken in one order to rule out deadlock;
      // batches of other nodes write their rows side by side.
      const current = await this.lockAndFetch(tx, keys);
      const places = await this.quotaPlaces(tx, writes, keys, current);

      const outcomes: WriteOutcome[] = [];
      const changes: TopologyChange[] = [];
      /** Per node, the index in `changes` of its last change: the record the table keeps. */
      const latest = new Map<string, number>();
      writes.forEach((write, index) => {
        const { namespace, node_id } = keys[index] as { namespace: string; node_id: string };
        const key = nodeKey(namespace, node_id);
        const found = current.get(key);
        const plan = planWrite(write, found?.record, found?.leaseMs, nowMs);
        if (isOutcome(plan)) {
          outcomes.push(plan);
          return;
        }
        const refused = places ? takePlace(places.get(namespace), write, found?.record, plan.record) : null;
        if (refused) {
          outcomes.push({ status: 'rejected', error: refused });
          return;
        }
        const change: TopologyChange = {
          version: 0,
          namespace,
          node_id,
          change_type: plan.changeType,
          changed_fields: plan.fields,
          reason: plan.reason,
          changed_at: nowIso,
          node: plan.record,
        };
        latest.set(key, changes.length);
        changes.push(change);
        outcomes.push({ status: 'changed', change });
        // Later writes of the same batch see this one's result.
        current.set(key, { record: plan.record, leaseMs: Date.parse(plan.record.last_heartbeat) });
      });
      if (changes.length === 0) return outcomes;

      const document = JSON.stringify({ changes, latest: [...latest.values()] });
      await tx.query(WRITE_RECORDS_SQL, [document]);
      // Versions are taken last, under the topology_state row lock held until commit: commits happen
      // in version order and a rollback returns the numbers, so the log stays gap-free.
      const state = await tx.query<{ version: string | number }>(WRITE_CHANGES_SQL, [document, changes.length, NOTIFY_CHANNEL, this.instanceToken]);
      const last = Number(state.rows[0]?.version ?? changes.length);
      changes.forEach((change, index) => {
        change.version = last - changes.length + 1 + index;
      });
      return outcomes;
    });
  }

  judgeWriteFailure(error: unknown, writes: NodeWrite[]): Promise<WriteFailure> {
    return judgeWriteFailure(error, subjectOf(writes), () => this.ping());
  }

  /**
   * The places taken in each namespace whose quota a write of this batch may need, counted under
   * that namespace's lock (held until commit). Null when no write can take a new place: updates of
   * nodes already counted under the same node_type need no count.
   */
  private async quotaPlaces(
    tx: SqlExecutor,
    writes: NodeWrite[],
    keys: Array<{ namespace: string; node_id: string }>,
    current: Map<string, { record: NodeRecord; leaseMs: number | undefined }>,
  ): Promise<Map<string, NamespacePlaces> | null> {
    const quoted = new Set<string>();
    const deregistering = new Set<string>();
    writes.forEach((write, index) => {
      const { namespace, node_id } = keys[index] as { namespace: string; node_id: string };
      if (write.kind === 'deregister') deregistering.add(namespace);
      if (write.kind !== 'register' || !write.quota) return;
      if (placeNeeds(current.get(nodeKey(namespace, node_id))?.record, write.registration.node_type).addsType) quoted.add(namespace);
    });
    // A node deregistered and registered again in one batch needs a place its first write freed.
    for (const write of writes) if (write.kind === 'register' && write.quota && deregistering.has(write.registration.namespace)) quoted.add(write.registration.namespace);
    if (quoted.size === 0) return null;
    const namespaces = [...quoted].sort();
    await tx.query(`SELECT count(pg_advisory_xact_lock(${QUOTA_LOCK_CLASS}, hashtext(ns))) FROM (SELECT jsonb_array_elements_text($1::jsonb) AS ns ORDER BY 1) AS sorted`, [
      JSON.stringify(namespaces),
    ]);
    // A statement of its own, after the lock: it sees what the previous holder committed.
    const counts = await tx.query<{ namespace: string; node_type: string; n: number | string }>(
      `SELECT namespace, node_type, count(*) AS n FROM node_registrations
       WHERE namespace IN (SELECT jsonb_array_elements_text($1::jsonb)) AND status <> 'removed'
       GROUP BY namespace, node_type`,
      [JSON.stringify(namespaces)],
    );
    const places = new Map<string, NamespacePlaces>(namespaces.map((namespace) => [namespace, { total: 0, byType: new Map() }]));
    for (const row of counts.rows) {
      const entry = places.get(row.namespace) as NamespacePlaces;
      entry.total += Number(row.n);
      entry.byType.set(row.node_type, Number(row.n));
    }
    return places;
  }

  private async lockAndFetch(tx: SqlExecutor, keys: Array<{ namespace: string; node_id: string }>): Promise<Map<string, { record: NodeRecord; leaseMs: number | undefined }>> {
    const lockKeys = [...new Set(keys.map((key) => keyLock(key.namespace, key.node_id)))].sort((a, b) => a - b);
    // The locks are a statement of their own: a read in the same statement would use a snapshot
    // taken before the wait for a lock ended, and miss the write that held it.
    await tx.query(`SELECT count(pg_advisory_xact_lock(${NODE_LOCK_CLASS}, k::int)) FROM jsonb_array_elements_text($1::jsonb) AS k`, [JSON.stringify(lockKeys)]);
    const result = await tx.query<NodeRow>(
      `SELECT r.*, (extract(epoch from l.last_heartbeat) * 1000)::float8 AS lease_heartbeat_ms
       FROM (SELECT DISTINCT namespace, node_id FROM jsonb_to_recordset($1::jsonb) AS k(namespace text, node_id text)) k
       JOIN node_registrations r ON r.namespace = k.namespace AND r.node_id = k.node_id
       LEFT JOIN node_leases l ON l.namespace = r.namespace AND l.node_id = r.node_id`,
      [JSON.stringify(keys)],
    );
    const found = new Map<string, { record: NodeRecord; leaseMs: number | undefined }>();
    for (const row of result.rows) {
      const leaseMs = row.lease_heartbeat_ms == null ? undefined : Number(row.lease_heartbeat_ms);
      found.set(nodeKey(row.namespace, row.node_id), { record: toRecord(row), leaseMs });
    }
    return found;
  }

  async renewLeases(renewals: LeaseRenewal[]): Promise<number> {
    if (renewals.length === 0) return 0;
    const result = await this.client.query(
      `UPDATE node_leases l SET last_heartbeat = v.at
       FROM jsonb_to_recordset($1::jsonb) AS v(namespace text, node_id text, incarnation bigint, at timestamptz)
       WHERE l.namespace = v.namespace AND l.node_id = v.node_id AND l.incarnation = v.incarnation
         AND l.online AND l.last_heartbeat < v.at`,
      [JSON.stringify(renewals.map((r) => ({ namespace: r.namespace, node_id: r.node_id, incarnation: r.incarnation, at: new Date(r.atMs).toISOString() })))],
    );
    return result.rowCount;
  }

  async findExpired(nowMs: number, graceFromMs: number, limit: number): Promise<ExpiryCandidate[]> {
    const result = await this.client.query<{ namespace: string; node_id: string; incarnation: string | number }>(
      `SELECT namespace, node_id, incarnation FROM node_leases
       WHERE online AND greatest(last_heartbeat, $2::timestamptz) + ttl_ms * interval '1 millisecond' <= $1::timestamptz
       LIMIT $3`,
      [new Date(nowMs).toISOString(), new Date(graceFromMs).toISOString(), limit],
    );
    return result.rows.map((row) => ({ namespace: row.namespace, node_id: row.node_id, incarnation: Number(row.incarnation) }));
  }

  async purgeRemoved(cutoffMs: number): Promise<number> {
    return this.client.transaction(async (tx) => {
      const purged = await tx.query<{ namespace: string; node_id: string }>(`DELETE FROM node_registrations WHERE status <> 'online' AND removed_at < $1 RETURNING namespace, node_id`, [
        new Date(cutoffMs).toISOString(),
      ]);
      if (purged.rows.length > 0) {
        await tx.query(
          `DELETE FROM node_leases l USING jsonb_to_recordset($1::jsonb) AS k(namespace text, node_id text)
           WHERE l.namespace = k.namespace AND l.node_id = k.node_id`,
          [JSON.stringify(purged.rows)],
        );
      }
      return purged.rows.length;
    });
  }

  async pruneChanges(cutoffMs: number): Promise<number> {
    return this.client.transaction(async (tx) => {
      // The newest change is kept whatever its age, so the log always says where it stands.
      const pruned = await tx.query<{ version: string | number }>(
        `DELETE FROM topology_changes WHERE changed_at < $1
           AND version < (SELECT max(version) FROM topology_changes) RETURNING version`,
        [new Date(cutoffMs).toISOString()],
      );
      if (pruned.rows.length === 0) return 0;
      const newest = Math.max(...pruned.rows.map((row) => Number(row.version)));
      await tx.query('UPDATE topology_state SET pruned_through = greatest(pruned_through, $1) WHERE id = 1', [newest]);
      return pruned.rows.length;
    });
  }

  async loadNodes(): Promise<{ nodes: NodeRecord[]; version: number }> {
    return this.client.transaction(async (tx) => {
      // One snapshot: the version read matches the rows read.
      const state = await tx.query<{ version: string | number }>('SELECT version FROM topology_state WHERE id = 1');
      const rows = await tx.query<NodeRow>(
        `SELECT r.*, (extract(epoch from l.last_heartbeat) * 1000)::float8 AS lease_heartbeat_ms
         FROM node_registrations r LEFT JOIN node_leases l ON l.namespace = r.namespace AND l.node_id = r.node_id`,
      );
      return { nodes: rows.rows.map(toRecord), version: Number(state.rows[0]?.version ?? 0) };
    });
  }

  async getNode(namespace: string, nodeId: string): Promise<NodeRecord | null> {
    const result = await this.client.query<NodeRow>(
      `SELECT r.*, (extract(epoch from l.last_heartbeat) * 1000)::float8 AS lease_heartbeat_ms
       FROM node_registrations r LEFT JOIN node_leases l ON l.namespace = r.namespace AND l.node_id = r.node_id
       WHERE r.namespace = $1 AND r.node_id = $2`,
      [namespace, nodeId],
    );
    const row = result.rows[0];
    return row ? toRecord(row) : null;
  }

  async changesSince(afterVersion: number, limit: number): Promise<ChangesPage> {
    const state = await this.client.query<{ pruned_through: string | number }>('SELECT pruned_through FROM topology_state WHERE id = 1');
    const prunedThrough = Number(state.rows[0]?.pruned_through ?? 0);
    const rows = await this.client.query<ChangeRow>('SELECT * FROM topology_changes WHERE version > $1 ORDER BY version LIMIT $2', [afterVersion, limit]);
    return { changes: rows.rows.map(toChange), prunedThrough };
  }

  async currentVersion(): Promise<number> {
    const state = await this.client.query<{ version: string | number }>('SELECT version FROM topology_state WHERE id = 1');
    return Number(state.rows[0]?.version ?? 0);
  }

  async getProfile(namespace: string, role: string): Promise<Profile | null> {
    const result = await this.client.query<ProfileRow>('SELECT * FROM node_profiles WHERE namespace = $1 AND role = $2', [namespace, role]);
    const row = result.rows[0];
    return row ? toProfile(row) : null;
  }

  async putProfile(namespace: string, role: string, config: JsonObject, nowMs: number): Promise<Profile> {
    const result = await this.client.query<ProfileRow>(
      `INSERT INTO node_profiles (namespace, role, config, created_at, updated_at) VALUES ($1, $2, $3::jsonb, $4, $4)
       ON CONFLICT (namespace, role) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at
       RETURNING *`,
      [namespace, role, JSON.stringify(config), new Date(nowMs).toISOString()],
    );
    return toProfile(result.rows[0] as ProfileRow);
  }

  async recordHeartbeats(entries: HeartbeatLogEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await this.client.query(
      `INSERT INTO heartbeat_log (namespace, node_id, recorded_at, status, metrics)
       SELECT namespace, node_id, recorded_at, status, metrics
       FROM jsonb_to_recordset($1::jsonb) AS x(namespace text, node_id text, recorded_at timestamptz, status text, metrics jsonb)`,
      [JSON.stringify(entries.map((e) => ({ namespace: e.namespace, node_id: e.node_id, recorded_at: new Date(e.atMs).toISOString(), status: e.status, metrics: e.metrics })))],
    );
  }

  async pruneHeartbeats(cutoffMs: number): Promise<number> {
    const result = await this.client.query('DELETE FROM heartbeat_log WHERE recorded_at < $1', [new Date(cutoffMs).toISOString()]);
    return result.rowCount;
  }

  async watchVersions(onVersion: (version: number) => void): Promise<() => Promise<void>> {
    return this.client.listen(
      NOTIFY_CHANNEL,
      (payload) => {
        const [text, token] = payload.split(':');
        const version = Number(text);
        if (token !== this.instanceToken && Number.isFinite(version)) onVersion(version);
      },
      // Notifications were lost while the connection was down: the version is unknown.
      () => onVersion(Number.POSITIVE_INFINITY),
    );
  }

  async holdsDuty(duty: Duty): Promise<boolean> {
    return this.client.tryAdvisoryLock(DUTY_LOCK_KEYS[duty]);
  }

  async projectionPosition(projection: string): Promise<number> {
    const result = await this.client.query<{ version: string | number }>('SELECT version FROM projection_positions WHERE projection = $1', [projection]);
    const row = result.rows[0];
    return row ? Number(row.version) : 0;
  }

  async saveProjectionPosition(projection: string, version: number): Promise<void> {
    await this.client.query(
      `INSERT INTO projection_positions (projection, version, updated_at) VALUES ($1, $2, now())
       ON CONFLICT (projection) DO UPDATE SET version = GREATEST(projection_positions.version, EXCLUDED.version), updated_at = now()`,
      [projection, version],
    );
  }

  async createJoinToken(token: JoinTokenRecord): Promise<void> {
    await this.client.query(
      `INSERT INTO join_tokens (id, token_hash, namespace, node_type, uses_remaining, max_uses, expires_at, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [token.id, token.token_hash, token.namespace, token.node_type, token.uses_remaining, token.max_uses, token.expires_at, token.created_at],
    );
  }

  async consumeJoinToken(tokenHash: string, nodeType: string, nowMs: number): Promise<JoinTokenUse> {
    const now = new Date(nowMs).toISOString();
    // One statement takes the use, so two concurrent exchanges of a single-use token cannot both win.
    const taken = await this.client.query<JoinTokenRow>(
      `UPDATE join_tokens SET uses_remaining = uses_remaining - 1, last_used_at = $3
       WHERE token_hash = $1 AND node_type = $2 AND uses_remaining > 0 AND expires_at > $3 RETURNING *`,
      [tokenHash, nodeType, now],
    );
    const row = taken.rows[0];
    if (row) return { status: 'consumed', token: toJoinToken(row) };
    const found = await this.client.query<JoinTokenRow>('SELECT * FROM join_tokens WHERE token_hash = $1', [tokenHash]);
    const existing = found.rows[0];
    if (!existing) return { status: 'unknown' };
    if (Date.parse(iso(existing.expires_at)) <= nowMs) return { status: 'expired' };
    if (existing.uses_remaining <= 0) return { status: 'used_up' };
    return { status: 'wrong_node_type', token: toJoinToken(existing) };
  }

  async recordCertificate(certificate: IssuedCertificate): Promise<void> {
    await this.client.query(
      `INSERT INTO issued_certificates (serial, spiffe_id, namespace, node_type, node_id, not_before, not_after, issued_via)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [certificate.serial, certificate.spiffe_id, certificate.namespace, certificate.node_type, certificate.node_id, certificate.not_before, certificate.not_after, certificate.issued_via],
    );
  }

  async revokeCertificate(revocation: { serial?: string; spiffe_id?: string; reason: string }, nowMs: number): Promise<CertificateRevocation> {
    const result = await this.client.query<RevocationRow>('INSERT INTO certificate_revocations (serial, spiffe_id, reason, revoked_at) VALUES ($1, $2, $3, $4) RETURNING *', [
      revocation.serial ?? null,
      revocation.spiffe_id ?? null,
      revocation.reason,
      new Date(nowMs).toISOString(),
    ]);
    return toRevocation(result.rows[0] as RevocationRow);
  }

  async listRevocations(): Promise<CertificateRevocation[]> {
    const result = await this.client.query<RevocationRow>('SELECT * FROM certificate_revocations ORDER BY id');
    return result.rows.map(toRevocation);
  }

  async isRevoked(serial: string, spiffeId: string, notBeforeMs: number): Promise<boolean> {
    const result = await this.client.query(
      `SELECT 1 FROM certificate_revocations
       WHERE serial = $1 OR (spiffe_id = $2 AND revoked_at >= $3) LIMIT 1`,
      [serial, spiffeId, new Date(notBeforeMs).toISOString()],
    );
    return result.rows.length > 0;
  }

  async savePolicy(namespace: string, expression: string, createdBy: string, nowMs: number): Promise<PolicyVersion> {
    return this.client.transaction(async (tx) => {
      // Savers of one namespace take turns, so each gets the next version number.
      await tx.query('SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))', [POLICY_LOCK_CLASS, namespace]);
      const result = await tx.query<PolicyRow>(
        `INSERT INTO namespace_policies (namespace, version, expression, created_by, created_at)
         SELECT $1::text, coalesce(max(version), 0) + 1, $2::text, $3::text, $4::timestamptz FROM namespace_policies WHERE namespace = $1::text
         RETURNING *`,
        [namespace, expression, createdBy, new Date(nowMs).toISOString()],
      );
      return toPolicy(result.rows[0] as PolicyRow);
    });
  }

  async getPolicy(namespace: string, version?: number): Promise<PolicyVersion | null> {
    const result =
      version === undefined
        ? await this.client.query<PolicyRow>('SELECT * FROM namespace_policies WHERE namespace = $1 ORDER BY version DESC LIMIT 1', [namespace])
        : await this.client.query<PolicyRow>('SELECT * FROM namespace_policies WHERE namespace = $1 AND version = $2', [namespace, version]);
    const row = result.rows[0];
    return row ? toPolicy(row) : null;
  }

  async listPolicyVersions(namespace: string): Promise<PolicyVersion[]> {
    const result = await this.client.query<PolicyRow>('SELECT * FROM namespace_policies WHERE namespace = $1 ORDER BY version DESC', [namespace]);
    return result.rows.map(toPolicy);
  }

  async currentPolicies(): Promise<PolicyVersion[]> {
    const result = await this.client.query<PolicyRow>('SELECT DISTINCT ON (namespace) * FROM namespace_policies ORDER BY namespace, version DESC');
    return result.rows.map(toPolicy);
  }

  async putQuotas(quotas: Omit<NamespaceQuotas, 'updated_at'>, nowMs: number): Promise<NamespaceQuotas> {
    const result = await this.client.query<QuotaRow>(
      `INSERT INTO namespace_quotas (namespace, max_nodes, max_nodes_per_type, updated_by, updated_at) VALUES ($1, $2, $3::jsonb, $4, $5)
       ON CONFLICT (namespace) DO UPDATE SET max_nodes = excluded.max_nodes, max_nodes_per_type = excluded.max_nodes_per_type,
         updated_by = excluded.updated_by, updated_at = excluded.updated_at
       RETURNING *`,
      [quotas.namespace, quotas.max_nodes, JSON.stringify(quotas.max_nodes_per_type), quotas.updated_by, new Date(nowMs).toISOString()],
    );
    return toQuotas(result.rows[0] as QuotaRow);
  }

  async getQuotas(namespace: string): Promise<NamespaceQuotas | null> {
    const result = await this.client.query<QuotaRow>('SELECT * FROM namespace_quotas WHERE namespace = $1', [namespace]);
    const row = result.rows[0];
    return row ? toQuotas(row) : null;
  }

  async listQuotas(): Promise<NamespaceQuotas[]> {
    const result = await this.client.query<QuotaRow>('SELECT * FROM namespace_quotas');
    return result.rows.map(toQuotas);
  }

  async appendAudit(entries: AuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await this.client.query(
      `INSERT INTO audit_log (occurred_at, actor, action, namespace, node_id, decision, reason, details)
       SELECT (e ->> 'occurred_at')::timestamptz, e ->> 'actor', e ->> 'action', e ->> 'namespace', e ->> 'node_id',
              e ->> 'decision', e ->> 'reason', coalesce(e -> 'details', '{}'::jsonb)
       FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, n)
       ORDER BY n`,
      [JSON.stringify(entries)],
    );
  }

  async queryAudit(query: AuditQuery): Promise<StoredAuditEntry[]> {
    const conditions: string[] = [];
    const values: unknown[] = [];
    const where = (column: string, value: unknown, operator = '='): void => {
      values.push(value);
      conditions.push(`${column} ${operator} $${values.length}`);
    };
    if (query.namespace !== undefined) where('namespace', query.namespace);
    if (query.action !== undefined) where('action', query.action);
    if (query.decision !== undefined) where('decision', query.decision);
    if (query.since !== undefined) where('occurred_at', query.since, '>=');
    if (query.beforeId !== undefined) where('id', query.beforeId, '<');
    values.push(query.limit);
    const result = await this.client.query<AuditRow>(`SELECT * FROM audit_log ${conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${values.length}`, values);
    return result.rows.map(toAudit);
  }

  async purgeAudit(cutoffMs: number): Promise<number> {
    const result = await this.client.query('DELETE FROM audit_log WHERE occurred_at < $1', [new Date(cutoffMs).toISOString()]);
    return result.rowCount;
  }

  async createApiKey(key: Omit<ApiKeyRecord, 'revoked_at'>): Promise<ApiKeyRecord> {
    const result = await this.client.query<ApiKeyRow>(`INSERT INTO api_keys (id, name, namespace, scope, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`, [
      key.id,
      key.name,
      key.namespace,
      key.scope,
      key.secret_hash,
      key.created_at,
    ]);
    return toApiKey(result.rows[0] as ApiKeyRow);
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | null> {
    const result = await this.client.query<ApiKeyRow>('SELECT * FROM api_keys WHERE id = $1', [id]);
    const row = result.rows[0];
    return row ? toApiKey(row) : null;
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    const result = await this.client.query<ApiKeyRow>('SELECT * FROM api_keys ORDER BY created_at, id');
    return result.rows.map(toApiKey);
  }

  async revokeApiKey(id: string, nowMs: number): Promise<ApiKeyRecord | null> {
    const result = await this.client.query<ApiKeyRow>('UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING *', [id, new Date(nowMs).toISOString()]);
    const row = result.rows[0];
    return row ? toApiKey(row) : null;
  }

  async countApiKeys(): Promise<number> {
    const result = await this.client.query<{ count: string | number }>('SELECT count(*) AS count FROM api_keys');
    return Number(result.rows[0]?.count ?? 0);
  }

  async ping(): Promise<void> {
    await this.client.query('SELECT 1');
  }

  async probeWrite(lockTimeoutMs: number): Promise<void> {
    await this.client.transaction(async (tx) => {
      await tx.query(`SELECT set_config('lock_timeout', $1, true)`, [`${Math.max(1, Math.round(lockTimeoutMs))}ms`]);
      await tx.query('UPDATE topology_state SET version = version WHERE id = 1');
    });
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

interface ProfileRow {
  namespace: string;
  role: string;
  config: JsonObject;
  created_at: Date | string;
  updated_at: Date | string;
}

interface JoinTokenRow {
  id: string;
  token_hash: string;
  namespace: string;
  node_type: string;
  uses_remaining: number;
  max_uses: number;
  expires_at: Date | string;
  created_at: Date | string;
}

function toJoinToken(row: JoinTokenRow): JoinTokenRecord {
  return {
    id: row.id,
    token_hash: row.token_hash,
    namespace: row.namespace,
    node_type: row.node_type,
    uses_remaining: Number(row.uses_remaining),
    max_uses: Number(row.max_uses),
    expires_at: iso(row.expires_at),
    created_at: iso(row.created_at),
  };
}

interface RevocationRow {
  id: string | number;
  serial: string | null;
  spiffe_id: string | null;
  reason: string;
  revoked_at: Date | string;
}

function toRevocation(row: RevocationRow): CertificateRevocation {
  return { id: Number(row.id), serial: row.serial, spiffe_id: row.spiffe_id, reason: row.reason, revoked_at: iso(row.revoked_at) };
}

function toProfile(row: ProfileRow): Profile {
  return { namespace: row.namespace, role: row.role, config: row.config, created_at: iso(row.created_at), updated_at: iso(row.updated_at) };
}

/** Advisory lock class of per-namespace policy saves (the two-key form). */
const POLICY_LOCK_CLASS = 0x7270;

interface PolicyRow {
  namespace: string;
  version: number;
  expression: string;
  created_by: string;
  created_at: Date | string;
}

function toPolicy(row: PolicyRow): PolicyVersion {
  return { namespace: row.namespace, version: Number(row.version), expression: row.expression, created_by: row.created_by, created_at: iso(row.created_at) };
}

interface QuotaRow {
  namespace: string;
  max_nodes: number | null;
  max_nodes_per_type: Record<string, number>;
  updated_by: string;
  updated_at: Date | string;
}

function toQuotas(row: QuotaRow): NamespaceQuotas {
  return {
    namespace: row.namespace,
    max_nodes: row.max_nodes === null ? null : Number(row.max_nodes),
    max_nodes_per_type: row.max_nodes_per_type,
    updated_by: row.updated_by,
    updated_at: iso(row.updated_at),
  };
}

interface AuditRow extends Omit<StoredAuditEntry, 'id' | 'occurred_at'> {
  id: string | number;
  occurred_at: Date | string;
}

function toAudit(row: AuditRow): StoredAuditEntry {
  return {
    id: Number(row.id),
    occurred_at: iso(row.occurred_at),
    actor: row.actor,
    action: row.action,
    namespace: row.namespace,
    node_id: row.node_id,
    decision: row.decision,
    reason: row.reason,
    details: row.details,
  };
}

interface ApiKeyRow {
  id: string;
  name: string | null;
  namespace: string;
  scope: ApiKeyRecord['scope'];
  secret_hash: string;
  created_at: Date | string;
  revoked_at: Date | string | null;
}

function toApiKey(row: ApiKeyRow): ApiKeyRecord {
  return { ...row, created_at: iso(row.created_at), revoked_at: row.revoked_at === null ? null : iso(row.revoked_at) };
}
