// The Store written once in SQL, over either driver (node-postgres or PGlite): here the nodes role
// (records, leases, the topology log), heartbeats and duty locks; the admin tables' roles are in sql/.
import { createHash, randomUUID } from 'node:crypto';
import type { JsonObject } from '../domain/json.js';
import { nodeKey, type ChangeType, type NamespacePlaces, type NodeRecord, type TopologyChange } from '../domain/node.js';
import { isOutcome, placeNeeds, planWrite, takePlace, type NodeWrite, type WriteOutcome } from '../domain/node-lifecycle.js';
import { migrate } from './migrate.js';
import { SqlApiKeys, SqlAudit, SqlIdentity, SqlPolicies, SqlProfiles } from './sql/admin-tables.js';
import { iso } from './sql/rows.js';
import { isLostConnection, judgeWriteFailure, type WriteSubject } from './sql-errors.js';
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

  private readonly profiles: SqlProfiles;
  private readonly identity: SqlIdentity;
  private readonly policies: SqlPolicies;
  private readonly audit: SqlAudit;
  private readonly apiKeys: SqlApiKeys;

  constructor(private readonly client: SqlClient) {
    this.profiles = new SqlProfiles(client);
    this.identity = new SqlIdentity(client);
    this.policies = new SqlPolicies(client);
    this.audit = new SqlAudit(client);
    this.apiKeys = new SqlApiKeys(client);
  }

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

  async ping(): Promise<void> {
    try {
      await this.client.query('SELECT 1');
    } catch (error) {
      // A pooled connection whose session the server ended fails once; a fresh one says whether the store answers.
      if (!isLostConnection(error)) throw error;
      await this.client.query('SELECT 1');
    }
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

  // ProfileStore: Role profiles (node_profiles).

  getProfile(namespace: string, role: string): Promise<Profile | null> {
    return this.profiles.getProfile(namespace, role);
  }

  putProfile(namespace: string, role: string, config: JsonObject, nowMs: number): Promise<Profile> {
    return this.profiles.putProfile(namespace, role, config, nowMs);
  }

  // IdentityStore: Join tokens, issued certificates and revocations.

  createJoinToken(token: JoinTokenRecord): Promise<void> {
    return this.identity.createJoinToken(token);
  }

  consumeJoinToken(tokenHash: string, nodeType: string, nowMs: number): Promise<JoinTokenUse> {
    return this.identity.consumeJoinToken(tokenHash, nodeType, nowMs);
  }

  recordCertificate(certificate: IssuedCertificate): Promise<void> {
    return this.identity.recordCertificate(certificate);
  }

  revokeCertificate(revocation: { serial?: string; spiffe_id?: string; reason: string }, nowMs: number): Promise<CertificateRevocation> {
    return this.identity.revokeCertificate(revocation, nowMs);
  }

  listRevocations(): Promise<CertificateRevocation[]> {
    return this.identity.listRevocations();
  }

  isRevoked(serial: string, spiffeId: string, notBeforeMs: number): Promise<boolean> {
    return this.identity.isRevoked(serial, spiffeId, notBeforeMs);
  }

  // PolicyStore: Policy versions (namespace_policies) and quotas (namespace_quotas).

  savePolicy(namespace: string, expression: string, createdBy: string, nowMs: number): Promise<PolicyVersion> {
    return this.policies.savePolicy(namespace, expression, createdBy, nowMs);
  }

  getPolicy(namespace: string, version?: number): Promise<PolicyVersion | null> {
    return this.policies.getPolicy(namespace, version);
  }

  listPolicyVersions(namespace: string): Promise<PolicyVersion[]> {
    return this.policies.listPolicyVersions(namespace);
  }

  currentPolicies(): Promise<PolicyVersion[]> {
    return this.policies.currentPolicies();
  }

  putQuotas(quotas: Omit<NamespaceQuotas, 'updated_at'>, nowMs: number): Promise<NamespaceQuotas> {
    return this.policies.putQuotas(quotas, nowMs);
  }

  getQuotas(namespace: string): Promise<NamespaceQuotas | null> {
    return this.policies.getQuotas(namespace);
  }

  listQuotas(): Promise<NamespaceQuotas[]> {
    return this.policies.listQuotas();
  }

  // AuditStore: The audit log (audit_log).

  appendAudit(entries: AuditEntry[]): Promise<void> {
    return this.audit.appendAudit(entries);
  }

  queryAudit(query: AuditQuery): Promise<StoredAuditEntry[]> {
    return this.audit.queryAudit(query);
  }

  purgeAudit(cutoffMs: number): Promise<number> {
    return this.audit.purgeAudit(cutoffMs);
  }

  // ApiKeyStore: API keys (api_keys).

  createApiKey(key: Omit<ApiKeyRecord, 'revoked_at'>): Promise<ApiKeyRecord> {
    return this.apiKeys.createApiKey(key);
  }

  getApiKey(id: string): Promise<ApiKeyRecord | null> {
    return this.apiKeys.getApiKey(id);
  }

  listApiKeys(): Promise<ApiKeyRecord[]> {
    return this.apiKeys.listApiKeys();
  }

  revokeApiKey(id: string, nowMs: number): Promise<ApiKeyRecord | null> {
    return this.apiKeys.revokeApiKey(id, nowMs);
  }

  countApiKeys(): Promise<number> {
    return this.apiKeys.countApiKeys();
  }
}
