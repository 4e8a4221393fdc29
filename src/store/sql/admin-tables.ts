// The admin tables of the Store, in SQL over either driver: profiles, identity, policy and quotas,
// audit, API keys. Each role is a class of its own; SqlStore hands its calls on to them.
import type { JsonObject } from '../../domain/json.js';
import type { SqlClient } from '../sql-client.js';
import type { ApiKeyRecord, ApiKeyStore, AuditEntry, AuditQuery, AuditStore, CertificateRevocation, IdentityStore, IssuedCertificate, JoinTokenRecord, JoinTokenUse } from '../store.js';
import type { NamespaceQuotas, PolicyStore, PolicyVersion, Profile, ProfileStore, StoredAuditEntry } from '../store.js';
import { iso } from './rows.js';

/** Role profiles (node_profiles). */
export class SqlProfiles implements ProfileStore {
  constructor(private readonly client: SqlClient) {}

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
}

/** Join tokens, issued certificates and revocations. */
export class SqlIdentity implements IdentityStore {
  constructor(private readonly client: SqlClient) {}

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
}

/** Policy versions (namespace_policies) and quotas (namespace_quotas). */
export class SqlPolicies implements PolicyStore {
  constructor(private readonly client: SqlClient) {}

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
}

/** The audit log (audit_log). */
export class SqlAudit implements AuditStore {
  constructor(private readonly client: SqlClient) {}

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
}

/** API keys (api_keys). */
export class SqlApiKeys implements ApiKeyStore {
  constructor(private readonly client: SqlClient) {}

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
