// Keeps a node's X.509 SVID current: enrols with a join token (or starts from credentials it is
// given), renews before expiry with a fresh key, retries failed renewals with capped exponential
// backoff while the current SVID is still valid, and hands out the current credentials to the
// agent's signer. Rotation and failure are events, so the node can react (alert, re-enrol, exit).
import { EventEmitter } from 'node:events';
import pino, { type Logger } from 'pino';
import { isRollcallError, RollcallError, type ErrorCode } from '../domain/errors.js';
import type { SvidCredentials } from '../security/signing.js';
import { RollcallClient } from '../client/rollcall-client.js';
import type { AgentIdentity } from './node-agent.js';
import { describeSvid, enrollSvid, renewSvid, type NodeSvid } from './svid-requests.js';

export interface SvidRotatorOptions {
  /** Base URL of the registry whose identity API issues the SVIDs. */
  registryUrl: string;
  /** The node the SVID is for (the agent's identity will do); node_type is needed to enrol. */
  identity: Pick<AgentIdentity, 'node_id'> & Partial<Pick<AgentIdentity, 'node_type'>>;
  /** A join token to enrol with at start, unless `credentials` are given and still valid. */
  joinToken?: string;
  /** An SVID the node already holds (e.g. from a previous enrolment): rotation starts from it. */
  credentials?: SvidCredentials;
  /** Renew this long before the SVID expires; default a third of its lifetime (renewal at 2/3). Ignored when not shorter than the lifetime. */
  renewBeforeMs?: number;
  /** Renew with a new key (default), proving possession with the current one; false keeps the key. */
  rotateKey?: boolean;
  /** First retry after a failed renewal; doubles with every failure up to `retryMaxMs`. Default 1 000. */
  retryInitialMs?: number;
  /** Longest wait between retries; default 60 000. */
  retryMaxMs?: number;
  /** Per-request timeout of the identity API calls; default 10 000. */
  timeoutMs?: number;
  logger?: Logger;
}

/** A new SVID replaced the previous one. */
export interface SvidRotation {
  spiffeId: string;
  serial: string;
  previousSerial: string;
  notBefore: Date;
  notAfter: Date;
  /** When the next renewal is due. */
  renewAt: Date;
  keyRotated: boolean;
}

/** A renewal failed. The current SVID stays in use until it expires. */
export interface SvidRotationFailure {
  error: Error;
  /** The API's error code when it answered one (SVID_REVOKED, REGISTRY_UNAVAILABLE, …). */
  code: ErrorCode | null;
  /** Failed renewals in a row. */
  attempt: number;
  /** False when renewing cannot succeed (revoked, expired, refused): the rotator has given up. */
  willRetry: boolean;
  /** Wait before the next attempt; null when giving up. */
  retryInMs: number | null;
  /** Serial and expiry of the SVID still in use. */
  serial: string;
  expiresAt: Date;
}

export interface SvidRotatorEvents {
  rotated: [rotation: SvidRotation];
  failure: [failure: SvidRotationFailure];
}

export type SvidRotatorState = 'idle' | 'starting' | 'running' | 'failed' | 'stopped';

/** setTimeout's longest delay; longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const DEFAULTS = { retryInitialMs: 1000, retryMaxMs: 60_000 } as const;

/**
 * When the SVID should be renewed: `renewBeforeMs` before it expires, or at 2/3 of its lifetime
 * when that is not given or not shorter than the lifetime.
 */
export function renewalTime(svid: { notBefore: Date; notAfter: Date }, renewBeforeMs?: number): Date {
  const notBefore = svid.notBefore.getTime();
  const notAfter = svid.notAfter.getTime();
  const lifetime = Math.max(0, notAfter - notBefore);
  const before = renewBeforeMs !== undefined && renewBeforeMs >= 0 && renewBeforeMs < lifetime ? renewBeforeMs : lifetime / 3;
  return new Date(Math.round(notAfter - before));
}

/** Wait before retry number `attempt` (1-based): doubling from `initialMs`, capped at `maxMs`, ±20 % jitter. */
export function retryDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.max(1, Math.round(base * (0.8 + 0.4 * random())));
}

/** Refusals that renewing again cannot cure: anything the API refused but a rate limit. */
function isPermanent(error: unknown): boolean {
  return isRollcallError(error) && error.status >= 400 && error.status < 500 && error.code !== 'RATE_LIMITED';
}

/**
 * Holds the node's current SVID and renews it in the background. `current` returns the credentials
 * to sign with, so it can be given to the agent as its signer (`signer: rotator.current`), or the
 * rotator itself as NodeAgentOptions.svid. Timers are unref'd: the rotator never keeps a process alive.
 */
export class SvidRotator extends EventEmitter<SvidRotatorEvents> {
  private readonly client: RollcallClient;
  private readonly log: Logger;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private svid: NodeSvid | null = null;
  private stateValue: SvidRotatorState = 'idle';
  private starting: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private renewing: Promise<SvidRotation | Error> | null = null;
  private failures = 0;
  private renewAtValue: Date | null = null;

  constructor(private readonly options: SvidRotatorOptions) {
    super();
    if (options.joinToken === undefined && options.credentials === undefined) throw new RangeError('SvidRotator needs a joinToken to enrol with, or credentials to start from');
    this.retryInitialMs = options.retryInitialMs ?? DEFAULTS.retryInitialMs;
    this.retryMaxMs = Math.max(options.retryMaxMs ?? DEFAULTS.retryMaxMs, this.retryInitialMs);
    if (!(this.retryInitialMs > 0)) throw new RangeError(`retryInitialMs must be positive, got ${this.retryInitialMs}`);
    this.client = new RollcallClient(options.registryUrl, options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs });
    this.log = (options.logger ?? pino({ level: 'silent' })).child({ component: 'svid-rotator', nodeId: options.identity.node_id });
  }

  get state(): SvidRotatorState {
    return this.stateValue;
  }

  /** Serial, SPIFFE ID and validity of the SVID in use; null before start. */
  get svidInfo(): { spiffeId: string; serial: string; notBefore: Date; notAfter: Date; renewAt: Date | null } | null {
    const svid = this.svid;
    return svid ? { spiffeId: svid.credentials.spiffeId, serial: svid.serial, notBefore: svid.notBefore, notAfter: svid.notAfter, renewAt: this.renewAtValue } : null;
  }

  /**
   * The credentials to sign with now. A bound function, so `signer: rotator.current` works. Throws
   * before the rotator holds an SVID (await start() first); after a final failure it keeps
   * returning the last SVID, which the registry refuses once it is revoked or expired.
   */
  readonly current = (): SvidCredentials => {
    if (this.svid === null) throw new RollcallError('SVID_INVALID', 'The SVID rotator holds no SVID yet: await start() first.', { details: { reason: 'not_started' } });
    return this.svid.credentials;
  };

  /**
   * Takes the given credentials (while valid) or enrols with the join token, then schedules the
   * renewals. Rejects when neither yields an SVID; start() may then be called again.
   */
  start(): Promise<void> {
    if (this.stateValue === 'stopped') return Promise.reject(new RollcallError('SHUTTING_DOWN', 'The SVID rotator was stopped; create a new one.'));
    this.starting ??= this.startOnce().catch((error: unknown) => {
      this.starting = null;
      if (this.stateValue === 'starting') this.stateValue = 'idle';
      throw error;
    });
    return this.starting;
  }

  private async startOnce(): Promise<void> {
    this.stateValue = 'starting';
    let svid: NodeSvid | null = null;
    const given = this.options.credentials;
    if (given !== undefined) {
      svid = describeSvid(given);
      if (svid.notAfter.getTime() <= Date.now()) {
        this.log.warn({ serial: svid.serial, notAfter: svid.notAfter.toISOString() }, 'the given SVID has expired');
        if (this.options.joinToken === undefined) {
          throw new RollcallError('SVID_EXPIRED', `The SVID ${svid.serial} expired at ${svid.notAfter.toISOString()}; enrol again with a join token.`, {
            details: { reason: 'expired', serial: svid.serial },
          });
        }
        svid = null;
      }
    }
    if (svid === null) {
      const { node_id: nodeId, node_type: nodeType } = this.options.identity;
      svid = await enrollSvid(this.client, { joinToken: this.options.joinToken as string, nodeId, ...(nodeType === undefined ? {} : { nodeType }) });
      this.log.info({ spiffeId: svid.credentials.spiffeId, serial: svid.serial, notAfter: svid.notAfter.toISOString() }, 'enrolled: SVID issued for the join token');
    }
    // stop() while enrolling: keep the SVID (a tombstone may still need it) but schedule nothing.
    this.svid = svid;
    if (this.stateValue !== 'starting') return;
    this.stateValue = 'running';
    this.scheduleRenewal();
  }

  /**
   * Renews now, whatever the schedule says (e.g. after a suspected key compromise). Resolves with the
   * rotation; rejects with the renewal's error, which is also reported as a `failure` event.
   */
  async rotateNow(): Promise<SvidRotation> {
    if (this.stateValue !== 'running') throw new RollcallError('SVID_INVALID', `Cannot rotate: the SVID rotator is ${this.stateValue}.`, { details: { reason: this.stateValue } });
    this.clearTimer();
    this.renewing ??= this.renew();
    const outcome = await this.renewing;
    if (outcome instanceof Error) throw outcome;
    return outcome;
  }

  /** Stops renewing; waits for a renewal in flight. `current` still answers with the last SVID. */
  async stop(): Promise<void> {
    this.stateValue = 'stopped';
    this.clearTimer();
    await this.renewing;
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private scheduleRenewal(): void {
    const svid = this.svid as NodeSvid;
    const { renewBeforeMs } = this.options;
    const lifetimeMs = svid.notAfter.getTime() - svid.notBefore.getTime();
    if (renewBeforeMs !== undefined && renewBeforeMs >= lifetimeMs) {
      this.log.warn({ renewBeforeMs, lifetimeMs }, 'renewBeforeMs is not shorter than the SVID lifetime; renewing at 2/3 of it');
    }
    const renewAt = renewalTime(svid, renewBeforeMs);
    this.renewAtValue = renewAt;
    this.arm(renewAt.getTime());
  }

  /** Renews at `atMs`; a wait longer than a timer allows is taken in steps. */
  private arm(atMs: number): void {
    if (this.stateValue !== 'running') return;
    this.clearTimer();
    const delay = Math.max(0, atMs - Date.now());
    this.timer = setTimeout(
      () => {
        this.timer = null;
        if (Date.now() < atMs) {
          this.arm(atMs);
          return;
        }
        this.renewing = this.renew();
      },
      Math.min(delay, MAX_TIMER_MS),
    );
    this.timer.unref();
  }

  /** One renewal: the rotation, or the error it failed with (already reported and acted upon). */
  private async renew(): Promise<SvidRotation | Error> {
    const previous = this.svid as NodeSvid;
    const rotateKey = this.options.rotateKey ?? true;
    try {
      let next: NodeSvid;
      try {
        next = await renewSvid(this.client, previous.credentials, { rotateKey, commonName: this.options.identity.node_id });
      } catch (error) {
        return this.onFailure(error, previous);
      }
      this.svid = next;
      this.failures = 0;
      if (this.stateValue === 'running') this.scheduleRenewal();
      const rotation: SvidRotation = {
        spiffeId: next.credentials.spiffeId,
        serial: next.serial,
        previousSerial: previous.serial,
        notBefore: next.notBefore,
        notAfter: next.notAfter,
        renewAt: renewalTime(next, this.options.renewBeforeMs),
        keyRotated: rotateKey,
      };
      this.log.info(
        { serial: rotation.serial, previousSerial: rotation.previousSerial, notAfter: rotation.notAfter.toISOString(), renewAt: rotation.renewAt.toISOString(), keyRotated: rotateKey },
        'SVID renewed',
      );
      this.notify('rotated', () => this.emit('rotated', rotation));
      return rotation;
    } finally {
      this.renewing = null;
    }
  }

  private onFailure(error: unknown, current: NodeSvid): Error {
    this.failures += 1;
    const failure = error instanceof Error ? error : new Error(String(error));
    const code = isRollcallError(error) ? error.code : null;
    const now = Date.now();
    const expiresAt = current.notAfter.getTime();
    const stopped = this.stateValue !== 'running';
    const giveUp = !stopped && (isPermanent(error) || now >= expiresAt);
    let retryInMs: number | null = null;
    if (giveUp) {
      this.stateValue = 'failed';
      this.renewAtValue = null;
      this.log.error({ err: failure, code, attempt: this.failures, serial: current.serial, notAfter: current.notAfter.toISOString() }, 'SVID renewal failed for good; the node needs a new join token');
    } else if (!stopped) {
      // Retry before the SVID expires: once it has, renewal cannot succeed.
      retryInMs = Math.max(this.retryInitialMs, Math.min(retryDelay(this.failures, this.retryInitialMs, this.retryMaxMs), expiresAt - now - 1000));
      this.renewAtValue = new Date(now + retryInMs);
      this.log.warn({ err: failure, code, attempt: this.failures, retryInMs, notAfter: current.notAfter.toISOString() }, 'SVID renewal failed; retrying while the current SVID is valid');
      this.arm(now + retryInMs);
    }
    if (stopped) return failure;
    const report: SvidRotationFailure = { error: failure, code, attempt: this.failures, willRetry: !giveUp, retryInMs, serial: current.serial, expiresAt: current.notAfter };
    this.notify('failure', () => this.emit('failure', report));
    return failure;
  }

  /** Listeners must not break the rotation: what they throw is logged. */
  private notify(event: keyof SvidRotatorEvents, emit: () => void): void {
    try {
      emit();
    } catch (error) {
      this.log.warn({ err: error, event }, 'SVID rotator listener threw');
    }
  }
}
