// API keys: creation (the secret is shown once and stored only as its SHA-256), parsing of the
// `rk_<id>_<secret>` form, constant-time verification, and a short-lived cache in front of the store.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { RollcallError } from '../domain/errors.js';
import { NAMESPACE_PATTERN } from '../domain/schemas.js';
import { API_KEY_SCOPES, type ApiKeyRecord, type ApiKeyScope, type ApiKeyStore } from '../store/store.js';

export { API_KEY_SCOPES, type ApiKeyRecord, type ApiKeyScope };

/** The namespace of a key that may act in every namespace. */
export const ALL_NAMESPACES = '*';
const TOKEN_PATTERN = /^rk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
/** How long a looked-up key is trusted before the store is asked again (revocations by another process). */
const CACHE_TTL_MS = 5_000;
const CACHE_MAX = 10_000;

/** What each scope allows, widest last: admin implies nodes:write implies nodes:read. */
const SCOPE_RANK: Record<ApiKeyScope, number> = { 'nodes:read': 1, 'nodes:write': 2, admin: 3 };

export function scopeAllows(granted: readonly ApiKeyScope[], needed: ApiKeyScope): boolean {
  return granted.some((scope) => SCOPE_RANK[scope] >= SCOPE_RANK[needed]);
}

export function isApiKeyScope(value: unknown): value is ApiKeyScope {
  return typeof value === 'string' && (API_KEY_SCOPES as readonly string[]).includes(value);
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export function parseApiKey(token: string): { id: string; secret: string } | null {
  const match = TOKEN_PATTERN.exec(token);
  return match ? { id: match[1] as string, secret: match[2] as string } : null;
}

/** Compares the secret's hash with the stored one in constant time. */
export function secretMatches(record: ApiKeyRecord, secret: string): boolean {
  const given = Buffer.from(hashSecret(secret), 'hex');
  const stored = Buffer.from(record.secret_hash, 'hex');
  return given.length === stored.length && timingSafeEqual(given, stored);
}

export interface NewApiKey {
  scope: ApiKeyScope;
  namespace: string;
  name?: string | undefined;
}

export interface CreatedApiKey {
  record: ApiKeyRecord;
  /** The whole key; this is the only time it exists outside the holder's hands. */
  token: string;
}

export function validateNewApiKey(input: NewApiKey): void {
  if (!isApiKeyScope(input.scope)) {
    throw new RollcallError('VALIDATION_FAILED', `scope must be one of ${API_KEY_SCOPES.join(', ')}.`, { details: { field: 'scope' } });
  }
  if (input.namespace !== ALL_NAMESPACES && !new RegExp(NAMESPACE_PATTERN).test(input.namespace)) {
    throw new RollcallError('VALIDATION_FAILED', 'namespace must be a DNS label (a-z, 0-9, -) or *.', { details: { field: 'namespace' } });
  }
  if (input.name !== undefined && (input.name.length === 0 || input.name.length > 200)) {
    throw new RollcallError('VALIDATION_FAILED', 'name must be 1 to 200 characters.', { details: { field: 'name' } });
  }
}

export async function createApiKey(store: ApiKeyStore, input: NewApiKey, nowMs = Date.now()): Promise<CreatedApiKey> {
  validateNewApiKey(input);
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  const record = await store.createApiKey({
    id,
    name: input.name ?? null,
    namespace: input.namespace,
    scope: input.scope,
    secret_hash: hashSecret(secret),
    created_at: new Date(nowMs).toISOString(),
  });
  return { record, token: `rk_${id}_${secret}` };
}

/** A key as lists show it: everything but the hash. */
export function presentApiKey(record: ApiKeyRecord): Omit<ApiKeyRecord, 'secret_hash'> {
  const { secret_hash: _hash, ...shown } = record;
  return shown;
}

export type KeyCheck = { ok: true; key: ApiKeyRecord } | { ok: false; reason: 'malformed' | 'unknown' | 'revoked' };

/** Looks keys up through a small cache; knows whether any key was ever created. */
export class ApiKeyRing {
  private readonly cache = new Map<string, { record: ApiKeyRecord | null; until: number }>();
  private anyKeys = false;
  private anyCheckedAt = 0;

  constructor(private readonly store: ApiKeyStore) {}

  async start(): Promise<void> {
    this.anyKeys = (await this.store.countApiKeys()) > 0;
    this.anyCheckedAt = Date.now();
  }

  /** True once a key exists; asks the store again at most once a second while none does. */
  async hasKeys(): Promise<boolean> {
    if (this.anyKeys) return true;
    if (Date.now() - this.anyCheckedAt >= 1000) {
      this.anyCheckedAt = Date.now();
      // While the store is away, the last answer stands: reads and heartbeats go on from memory.
      this.anyKeys = await this.store.countApiKeys().then(
        (count) => count > 0,
        () => this.anyKeys,
      );
    }
    return this.anyKeys;
  }

  async check(token: string): Promise<KeyCheck> {
    const parsed = parseApiKey(token);
    if (!parsed) return { ok: false, reason: 'malformed' };
    const now = Date.now();
    let entry = this.cache.get(parsed.id);
    if (!entry || entry.until <= now) {
      const stale = entry;
      let record: ApiKeyRecord | null;
      try {
        record = await this.store.getApiKey(parsed.id);
      } catch (cause) {
        // The store is away: a key seen before keeps its last known state until it is back.
        if (stale) return this.verdict(stale.record, parsed.secret);
        throw new RollcallError('STORE_UNAVAILABLE', 'The store is unavailable: the API key cannot be checked.', { cause });
      }
      if (this.cache.size >= CACHE_MAX) this.cache.clear();
      entry = { record, until: now + CACHE_TTL_MS };
      this.cache.set(parsed.id, entry);
    }
    return this.verdict(entry.record, parsed.secret);
  }

  private verdict(record: ApiKeyRecord | null, secret: string): KeyCheck {
    if (!record || !secretMatches(record, secret)) return { ok: false, reason: 'unknown' };
    if (record.revoked_at !== null) return { ok: false, reason: 'revoked' };
    return { ok: true, key: record };
  }

  /** A key created or revoked here takes effect at once. */
  forget(id: string): void {
    this.cache.delete(id);
  }

  noteCreated(): void {
    this.anyKeys = true;
  }
}
