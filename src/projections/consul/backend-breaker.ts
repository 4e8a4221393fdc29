// A circuit breaker per backend with the seeds' policy (open after N consecutive failures, half-open
// after a delay with a budget of trial calls, closed after M successes), built on opossum, plus
// retries with exponential backoff and full jitter. State and call outcomes go to Prometheus.
//
// How the policy maps onto opossum 9: opossum holds the state, runs the open → half-open timer
// (`resetTimeout`), fails calls fast while open (EOPENBREAKER) and emits the transitions. Its own
// tripping rule is an error percentage over a rolling window, and its half-open state admits one
// trial call that closes the circuit on its first success; neither expresses "5 consecutive
// failures" nor "up to 3 trials, closed after 2 successes". So its percentage trip is disabled
// (errorThresholdPercentage 100 can never be exceeded) and this class counts consecutive failures
// and calls `open()`; in half-open it admits the trial calls itself and calls `close()` after the
// required successes, or `open()` (restarting the timer) on a failed trial.
import CircuitBreaker from 'opossum';
import client from 'prom-client';
import { metricOnce } from '../../metrics.js';

export const BREAKER_STATES = ['closed', 'half-open', 'open'] as const;
export type BreakerState = (typeof BREAKER_STATES)[number];

export interface BreakerPolicy {
  /** Consecutive failures that open the circuit (seeds: 5). */
  failureThreshold: number;
  /** Time open before trial calls are let through (seeds: 60 s). */
  resetTimeoutMs: number;
  /** Trial calls admitted per half-open period (seeds: 3). */
  halfOpenMaxCalls: number;
  /** Successful trials that close the circuit (seeds: 2). */
  successThreshold: number;
}

export interface RetryPolicy {
  /** Further attempts after the first, for transient failures only. */
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const SEED_BREAKER_POLICY: BreakerPolicy = { failureThreshold: 5, resetTimeoutMs: 60_000, halfOpenMaxCalls: 3, successThreshold: 2 };
export const DEFAULT_RETRY_POLICY: RetryPolicy = { retries: 2, baseDelayMs: 100, maxDelayMs: 2000 };

/** A call refused without being attempted because the circuit is open. */
export class BreakerOpenError extends Error {
  readonly code = 'EOPENBREAKER';
  constructor(backend: string) {
    super(`Circuit breaker of ${backend} is open`);
    this.name = 'BreakerOpenError';
  }
}

export interface BackendBreakerOptions {
  backend: string;
  metrics: client.Registry;
  policy?: Partial<BreakerPolicy>;
  retry?: Partial<RetryPolicy>;
  /** Whether a failure says the backend is unwell (counts against the circuit, is retried). */
  isTransient?: (error: unknown) => boolean;
}

type Outcome = 'success' | 'failure' | 'rejected' | 'ignored';

export class BackendBreaker {
  readonly backend: string;
  readonly policy: BreakerPolicy;
  readonly retry: RetryPolicy;
  private readonly breaker: CircuitBreaker<[() => Promise<unknown>], unknown>;
  private readonly isTransient: (error: unknown) => boolean;
  private consecutiveFailures = 0;
  private trialsAdmitted = 0;
  private trialSuccesses = 0;
  private readonly listeners = new Set<(state: BreakerState) => void>();
  private readonly stateGauge: client.Gauge<'backend'>;
  private readonly calls: client.Counter<'backend' | 'outcome'>;
  private readonly transitions: client.Counter<'backend' | 'state'>;
  lastError: string | null = null;
  lastErrorAt: number | null = null;

  constructor(options: BackendBreakerOptions) {
    this.backend = options.backend;
    this.policy = { ...SEED_BREAKER_POLICY, ...options.policy };
    this.retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.isTransient = options.isTransient ?? (() => true);
    const registers = [options.metrics];
    this.stateGauge = metricOnce(
      options.metrics,
      'rollcall_circuit_breaker_state',
      () => new client.Gauge({ name: 'rollcall_circuit_breaker_state', help: 'Circuit breaker state by backend: 0 closed, 1 half-open, 2 open.', labelNames: ['backend'], registers }),
    );
    this.calls = metricOnce(
      options.metrics,
      'rollcall_circuit_breaker_calls_total',
      () =>
        new client.Counter({
          name: 'rollcall_circuit_breaker_calls_total',
          help: 'Calls through a circuit breaker by outcome: success, failure (counts against the circuit), rejected (failed fast while open), ignored (a non-transient error such as a 4xx).',
          labelNames: ['backend', 'outcome'],
          registers,
        }),
    );
    this.transitions = metricOnce(
      options.metrics,
      'rollcall_circuit_breaker_transitions_total',
      () => new client.Counter({ name: 'rollcall_circuit_breaker_transitions_total', help: 'Circuit breaker state changes by backend and new state.', labelNames: ['backend', 'state'], registers }),
    );
    this.breaker = new CircuitBreaker((action: () => Promise<unknown>) => action(), {
      name: options.backend,
      resetTimeout: this.policy.resetTimeoutMs,
      // Timeouts are the client's (AbortSignal.timeout), so the request is really cancelled.
      timeout: false,
      errorThresholdPercentage: 100,
      // Non-transient errors (a 400 from a healthy backend) do not count against the circuit.
      errorFilter: (error: unknown) => !this.isTransient(error),
    });
    this.breaker.on('open', () => this.transitioned('open'));
    this.breaker.on('halfOpen', () => this.transitioned('half-open'));
    this.breaker.on('close', () => this.transitioned('closed'));
    this.stateGauge.set({ backend: this.backend }, 0);
  }

  get state(): BreakerState {
    if (this.breaker.opened) return 'open';
    if (this.breaker.halfOpen) return 'half-open';
    return 'closed';
  }

  /** Calls `listener` on every transition; returns an unsubscribe function. */
  onStateChange(listener: (state: BreakerState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private transitioned(state: BreakerState): void {
    this.consecutiveFailures = 0;
    this.trialsAdmitted = 0;
    this.trialSuccesses = 0;
    this.stateGauge.set({ backend: this.backend }, BREAKER_STATES.indexOf(state));
    this.transitions.inc({ backend: this.backend, state });
    for (const listener of this.listeners) listener(state);
  }

  /** One attempt through the circuit: fails fast while open, counts the outcome. */
  async attempt<T>(action: () => Promise<T>): Promise<T> {
    if (this.breaker.halfOpen) return this.trial(action);
    let result: T;
    try {
      result = (await this.breaker.fire(action)) as T;
    } catch (error) {
      if ((error as { code?: string }).code === 'EOPENBREAKER') {
        this.calls.inc({ backend: this.backend, outcome: 'rejected' });
        throw new BreakerOpenError(this.backend);
      }
      this.failed(error);
      throw error;
    }
    this.count('success');
    this.consecutiveFailures = 0;
    return result;
  }

  private async trial<T>(action: () => Promise<T>): Promise<T> {
    if (this.trialsAdmitted >= this.policy.halfOpenMaxCalls) {
      this.calls.inc({ backend: this.backend, outcome: 'rejected' });
      throw new BreakerOpenError(this.backend);
    }
    this.trialsAdmitted++;
    let result: T;
    try {
      result = await action();
    } catch (error) {
      this.failed(error);
      throw error;
    }
    this.count('success');
    if (this.breaker.halfOpen && ++this.trialSuccesses >= this.policy.successThreshold) this.breaker.close();
    return result;
  }

  private failed(error: unknown): void {
    if (!this.isTransient(error)) {
      this.count('ignored');
      return;
    }
    this.count('failure');
    this.lastError = (error as Error).message;
    this.lastErrorAt = Date.now();
    if (this.breaker.halfOpen) {
      this.breaker.open();
      return;
    }
    if (++this.consecutiveFailures >= this.policy.failureThreshold) this.breaker.open();
  }

  private count(outcome: Outcome): void {
    this.calls.inc({ backend: this.backend, outcome });
  }

  /**
   * `action` with retries: transient failures are retried after an exponentially growing delay
   * with full jitter, unless the circuit opened meanwhile; other errors are thrown at once.
   */
  async call<T>(action: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.attempt(action);
      } catch (error) {
        if (error instanceof BreakerOpenError || !this.isTransient(error) || attempt >= this.retry.retries || this.state !== 'closed') throw error;
        const ceiling = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** attempt);
        await new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
      }
    }
  }

  /** Stops the open → half-open timer. */
  shutdown(): void {
    this.listeners.clear();
    this.breaker.shutdown();
  }
}
