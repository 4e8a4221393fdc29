// Join tokens: high-entropy bearer secrets that let a node enrol once; only their SHA-256 is stored.
import { createHash, randomBytes } from 'node:crypto';
import { RollcallError } from '../domain/errors.js';
import type { IdentityStore } from '../store/store.js';
import { isSpiffeSegment } from './ca.js';

export const JOIN_TOKEN_PREFIX = 'rcjt_';
export const DEFAULT_JOIN_TOKEN_TTL_SECONDS = 3600;
export const MAX_JOIN_TOKEN_TTL_SECONDS = 30 * 24 * 3600;

/** A new token (shown once) and the id under which it is listed. */
export function generateJoinToken(): { token: string; id: string } {
  return { token: `${JOIN_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`, id: `jt_${randomBytes(8).toString('hex')}` };
}

/** 256 random bits need no salt or slow hash: SHA-256 keeps lookups by hash exact and fast. */
export function hashJoinToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Parses `90`, `90s`, `15m`, `1h` or `7d` into seconds; null when malformed. */
export function parseDurationSeconds(text: string): number | null {
  const match = /^(\d+)(s|m|h|d)?$/.exec(text.trim());
  if (!match) return null;
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(match[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  const seconds = Number(match[1]) * unit;
  return seconds > 0 && Number.isSafeInteger(seconds) ? seconds : null;
}

export interface CreatedJoinToken {
  /** The secret: shown once, stored only as a hash. */
  token: string;
  id: string;
  namespace: string;
  node_type: string;
  uses: number;
  expires_at: string;
}

/** Creates a join token in the store (the CLI's path, which needs no CA, and the API's). */
export async function createJoinToken(
  store: Pick<IdentityStore, 'createJoinToken'>,
  request: { namespace: string; nodeType: string; ttlSeconds?: number; uses?: number },
  nowMs: number = Date.now(),
): Promise<CreatedJoinToken> {
  const ttlSeconds = request.ttlSeconds ?? DEFAULT_JOIN_TOKEN_TTL_SECONDS;
  const uses = request.uses ?? 1;
  if (!(ttlSeconds > 0 && ttlSeconds <= MAX_JOIN_TOKEN_TTL_SECONDS))
    throw new RollcallError('VALIDATION_FAILED', `ttl must be 1 s to ${MAX_JOIN_TOKEN_TTL_SECONDS} s.`, { details: { field: 'ttl_seconds' } });
  if (!(Number.isInteger(uses) && uses >= 1 && uses <= 10_000)) throw new RollcallError('VALIDATION_FAILED', 'uses must be an integer from 1 to 10000.', { details: { field: 'uses' } });
  // A token for a node_type that cannot be a SPIFFE path segment could never be used.
  if (!isSpiffeSegment(request.nodeType))
    throw new RollcallError('VALIDATION_FAILED', `node_type "${request.nodeType}" cannot be a SPIFFE ID path segment: letters, digits, ".", "-" and "_" only.`, { details: { field: 'node_type' } });
  const { token, id } = generateJoinToken();
  const expiresAt = new Date(nowMs + ttlSeconds * 1000).toISOString();
  await store.createJoinToken({
    id,
    token_hash: hashJoinToken(token),
    namespace: request.namespace,
    node_type: request.nodeType,
    uses_remaining: uses,
    max_uses: uses,
    expires_at: expiresAt,
    created_at: new Date(nowMs).toISOString(),
  });
  return { token, id, namespace: request.namespace, node_type: request.nodeType, uses, expires_at: expiresAt };
}
