// The audit trail: who registered, deregistered, was refused or changed policy, buffered in memory
// and appended to the store in batches so the registration path never waits on it.
import type { Logger } from 'pino';
import { RollcallError } from '../domain/errors.js';
import type { JsonObject } from '../domain/json.js';
import { toStorableText } from '../domain/storable-text.js';
import type { AuditDecision, AuditEntry, AuditQuery, AuditStore, DutyLocks, StoredAuditEntry } from '../store/store.js';

/** Actions rollcall itself records; other components may record their own (`auth.denied`, …). */
export const AUDIT_ACTIONS = ['node.register', 'node.deregister', 'policy.update', 'quota.update'] as const;
export const AUDIT_DECISIONS = ['allowed', 'denied'] as const satisfies readonly AuditDecision[];

/** Who a caller is when nothing better is known. */
export const ANONYMOUS = 'anonymous';

/**
 * Widths in characters of the audit_log columns that hold text from outside (005_policy_audit.sql);
 * an actor is also what namespace_policies.created_by and namespace_quotas.updated_by hold (255).
 */
export const AUDIT_TEXT_WIDTHS = { actor: 255, action: 64, namespace: 63, node_id: 255 } as const;

/**
 * `text` cut to `width` characters (code points, as VARCHAR counts them: no pair is split), its last one
 * '…' when cut. A JWT subject, a key name or a claimed node id may be of any length.
 */
export function fitText(text: string, width: number): string {
  if (text.length <= width) return text;
  const points = Array.from(text);
  return points.length <= width ? text : `${points.slice(0, width - 1).join('')}\u2026`;
}

export interface AuditRecord {
  /** A credential id, 'anonymous', 'node:<id>' or 'system'. */
  actor: string;
  action: string;
  namespace?: string | null;
  node_id?: string | null;
  decision: AuditDecision;
  reason?: string | null;
  details?: JsonObject;
  /**
   * Entries with the same key within `coalesceMs` of the first become one more entry at the end of
   * the window, with `details.repeated` (how many), `first_at` and `last_at`: a flood of refusals
   * (a client hammering past its rate limit) costs two rows a window, not one per request.
   */
  coalesceKey?: string;
}

/** Repeats of a coalesced entry held back until their window ends. */
interface Repeats {
  first: AuditEntry;
  windowEndsMs: number;
  count: number;
  lastAtMs: number;
}

export interface AuditLogOptions {
  /** Purges run only on the instance holding the sweeper duty. */
  store: AuditStore & DutyLocks;
  logger: Logger;
  /** Buffered entries are written this often. */
  flushMs: number;
  /** A flush writes at most this many entries per statement. */
  maxBatch?: number;
  /** Entries older than this are purged (by the instance holding the sweeper duty); none when absent. */
  retentionMs?: number;
  purgeIntervalMs?: number;
  /** Window of `coalesceKey`; default 60 000. */
  coalesceMs?: number;
  now?: () => number;
}

export interface AuditPage {
  entries: StoredAuditEntry[];
  next_cursor: string | null;
}

export class AuditLog {
  private buffer: AuditEntry[] = [];
  private timer: NodeJS.Timeout | null = null;
  private purgeTimer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private readonly now: () => number;
  private readonly log: Logger;
  /** Open coalescing windows by key. */
  private readonly repeats = new Map<string, Repeats>();

  constructor(private readonly options: AuditLogOptions) {
    this.now = options.now ?? Date.now;
    this.log = options.logger.child({ component: 'audit' });
  }

  start(): void {
    this.timer = setInterval(() => {
      void this.flush().catch((err: unknown) => this.log.warn({ err, pending: this.buffer.length }, 'audit flush failed; retrying'));
    }, this.options.flushMs);
    this.timer.unref();
    const { retentionMs, purgeIntervalMs } = this.options;
    if (retentionMs !== undefined && purgeIntervalMs !== undefined) {
      this.purgeTimer = setInterval(() => {
        void (async () => {
          if (!(await this.options.store.holdsDuty('sweeper'))) return;
          const purged = await this.purge(this.now() - retentionMs);
          if (purged > 0) this.log.info({ purged }, 'audit entries past retention purged');
        })().catch((err: unknown) => this.log.warn({ err }, 'audit purge failed'));
      }, purgeIntervalMs);
      this.purgeTimer.unref();
    }
  }

  /** Queues an entry; it is durable after the next flush (at the latest, on stop). */
  record(record: AuditRecord): void {
    const nowMs = this.now();
    // Text the store cannot hold (from a credential's claims, say) is replaced, never refused: one
    // such entry would otherwise fail every flush, and hold back every entry recorded after it.
    const storable: AuditEntry = toStorableText({
      occurred_at: new Date(nowMs).toISOString(),
      actor: record.actor,
      action: record.action,
      namespace: record.namespace ?? null,
      node_id: record.node_id ?? null,
      decision: record.decision,
      reason: record.reason ?? null,
      details: record.details ?? {},
    });
    // Text longer than its column is cut to fit, never refused, for the same reason; details say so.
    const entry = fitColumns(storable);
    const key = record.coalesceKey;
    if (key !== undefined) {
      this.closeWindows(nowMs);
      const open = this.repeats.get(key);
      if (open) {
        open.count += 1;
        open.lastAtMs = nowMs;
        return;
      }
      this.repeats.set(key, { first: entry, windowEndsMs: nowMs + (this.options.coalesceMs ?? 60_000), count: 0, lastAtMs: nowMs });
    }
    this.buffer.push(entry);
  }

  /** Writes the summary of every coalescing window that has ended (all of them when `all`). */
  private closeWindows(nowMs: number, all = false): void {
    for (const [key, open] of this.repeats) {
      if (!all && open.windowEndsMs > nowMs) continue;
      this.repeats.delete(key);
      if (open.count === 0) continue;
      this.buffer.push({
        ...open.first,
        occurred_at: new Date(open.lastAtMs).toISOString(),
        details: { ...open.first.details, repeated: open.count, first_at: open.first.occurred_at, last_at: new Date(open.lastAtMs).toISOString() },
      });
    }
  }

  get pending(): number {
    return this.buffer.length;
  }

  /** Writes everything recorded before the call; concurrent callers share a run, then queue one more. */
  async flush(): Promise<void> {
    this.closeWindows(this.now());
    while (this.flushing) await this.flushing.catch(() => undefined);
    if (this.buffer.length === 0) return;
    this.flushing = this.flushOnce().finally(() => {
      this.flushing = null;
    });
    await this.flushing;
  }

  private async flushOnce(): Promise<void> {
    const batchSize = this.options.maxBatch ?? 1000;
    while (this.buffer.length > 0) {
      const batch = this.buffer.slice(0, batchSize);
      // Removed only once written: a failed flush keeps them for the next one.
      await this.options.store.appendAudit(batch);
      this.buffer.splice(0, batch.length);
    }
  }

  /** Newest first; `cursor` is the previous page's next_cursor. */
  async query(filter: Omit<AuditQuery, 'beforeId'> & { cursor?: string }): Promise<AuditPage> {
    const { cursor, ...rest } = filter;
    let beforeId: number | undefined;
    if (cursor !== undefined) {
      beforeId = Number(Buffer.from(cursor, 'base64url').toString('utf8'));
      if (!Number.isSafeInteger(beforeId) || beforeId <= 0)
        throw new RollcallError('VALIDATION_FAILED', 'Query parameter cursor is not a cursor this API returned.', { details: { parameter: 'cursor' } });
    }
    // What was recorded before the query is part of its answer.
    await this.flush();
    const entries = await this.options.store.queryAudit({ ...rest, ...(beforeId === undefined ? {} : { beforeId }) });
    const last = entries.at(-1);
    return { entries, next_cursor: entries.length === filter.limit && last ? Buffer.from(String(last.id)).toString('base64url') : null };
  }

  /** Retention: drops entries older than `cutoffMs`. */
  purge(cutoffMs: number): Promise<number> {
    return this.options.store.purgeAudit(cutoffMs);
  }

  /** Stops the timer and writes every entry recorded so far. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    this.timer = null;
    this.purgeTimer = null;
    this.closeWindows(this.now(), true);
    await this.flush();
  }
}

/** `entry` with actor, action, namespace and node_id cut to their columns; `details.truncated` has their lengths before. */
function fitColumns(entry: AuditEntry): AuditEntry {
  const truncated: Record<string, number> = {};
  const fitted = { ...entry };
  for (const field of Object.keys(AUDIT_TEXT_WIDTHS) as (keyof typeof AUDIT_TEXT_WIDTHS)[]) {
    const text = entry[field];
    if (text === null) continue;
    const fit = fitText(text, AUDIT_TEXT_WIDTHS[field]);
    if (fit === text) continue;
    truncated[field] = Array.from(text).length;
    fitted[field] = fit;
  }
  return Object.keys(truncated).length === 0 ? entry : { ...fitted, details: { ...entry.details, truncated } };
}
