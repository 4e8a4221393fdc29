// Reads query-string parameters strictly: a bad value is a VALIDATION_FAILED naming the parameter.
import semver from 'semver';
import { RollcallError } from '../domain/errors.js';
import { isJsonObject, type JsonObject } from '../domain/json.js';
import { NODE_STATUSES, type NodeStatus } from '../domain/node.js';
import { NAMESPACE_PATTERN } from '../domain/schemas.js';

export type Query = Record<string, string | string[] | undefined>;

function invalid(parameter: string, message: string): RollcallError {
  return new RollcallError('VALIDATION_FAILED', `Query parameter ${parameter} ${message}.`, { details: { parameter } });
}

export function single(query: Query, name: string): string | undefined {
  const value = query[name];
  if (Array.isArray(value)) {
    if (value.length > 1) throw invalid(name, 'is given more than once');
    return value[0];
  }
  return value;
}

/** Values of a repeatable, comma-separable parameter (`label=a,b&label=c`). */
export function list(query: Query, name: string): string[] | undefined {
  const value = query[name];
  if (value === undefined) return undefined;
  const items = (Array.isArray(value) ? value : [value])
    .flatMap((item) => item.split(','))
    .map((item) => item.trim())
    .filter(Boolean);
  return items.length > 0 ? items : undefined;
}

export function integer(query: Query, name: string, range: { min: number; max: number; fallback: number }): number {
  const text = single(query, name);
  if (text === undefined || text === '') return range.fallback;
  if (!/^\d+$/.test(text)) throw invalid(name, `must be a whole number from ${range.min} to ${range.max}`);
  const value = Number(text);
  if (value < range.min || value > range.max) throw invalid(name, `must be from ${range.min} to ${range.max}`);
  return value;
}

export function namespace(query: Query, fallback?: string): string | undefined {
  const value = single(query, 'namespace') ?? fallback;
  if (value !== undefined && !new RegExp(NAMESPACE_PATTERN).test(value)) throw invalid('namespace', 'must be a DNS label (a-z, 0-9, -)');
  return value;
}

export function statuses(query: Query): NodeStatus[] | undefined {
  const values = list(query, 'status');
  if (values === undefined) return undefined;
  for (const value of values) {
    if (!(NODE_STATUSES as readonly string[]).includes(value)) throw invalid('status', `must be one of ${NODE_STATUSES.join(', ')}`);
  }
  return values as NodeStatus[];
}

export function jsonObject(query: Query, name: string): JsonObject | undefined {
  const text = single(query, name);
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalid(name, 'must be a JSON object, e.g. {"gpu":true}');
  }
  if (!isJsonObject(parsed)) throw invalid(name, 'must be a JSON object, e.g. {"gpu":true}');
  return parsed;
}

export function versionRange(query: Query, name: string): string | undefined {
  const text = single(query, name);
  if (text === undefined) return undefined;
  if (text.length > 100 || semver.validRange(text) === null) throw invalid(name, 'must be a version or a range such as >=1.2.0');
  return text;
}

/** ISO-8601 timestamps (`2026-01-31`, `2026-01-31T12:00:00Z`, with an offset or fractions) in years 1 to 9999. */
const TIMESTAMP_PATTERN = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;
const EARLIEST_MS = Date.parse('0001-01-01T00:00:00Z');
const LATEST_MS = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * A timestamp parameter as an ISO string in UTC. Refused unless well-formed ISO-8601 within years 1
 * to 9999, a range both JavaScript dates and PostgreSQL's timestamptz hold (PostgreSQL has no year 0).
 */
export function timestamp(query: Query, name: string): string | undefined {
  const text = single(query, name);
  if (text === undefined) return undefined;
  const ms = TIMESTAMP_PATTERN.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(ms)) throw invalid(name, 'must be an ISO-8601 timestamp such as 2026-01-31T12:00:00Z');
  if (ms < EARLIEST_MS || ms > LATEST_MS) throw invalid(name, 'must be a timestamp from year 1 to 9999');
  return new Date(ms).toISOString();
}

/** Durations as `30s`, `500ms`, `2m` or plain seconds. */
export function duration(query: Query, name: string, range: { maxMs: number; fallbackMs: number }): number {
  const text = single(query, name);
  if (text === undefined || text === '') return range.fallbackMs;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text);
  if (!match) throw invalid(name, 'must be a duration such as 30s, 500ms or 2m');
  const unit = match[2] ?? 's';
  const ms = Number(match[1]) * (unit === 'ms' ? 1 : unit === 's' ? 1000 : 60_000);
  if (ms > range.maxMs) throw invalid(name, `must be at most ${range.maxMs / 1000}s`);
  return ms;
}

export function encodeCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

export function decodeCursor(query: Query): string | undefined {
  const text = single(query, 'cursor');
  if (text === undefined || text === '') return undefined;
  if (!/^[A-Za-z0-9_-]{1,700}$/.test(text)) throw invalid('cursor', 'is not a cursor this registry returned');
  const key = Buffer.from(text, 'base64url').toString('utf8');
  if (!key.includes('\u0000')) throw invalid('cursor', 'is not a cursor this registry returned');
  return key;
}
