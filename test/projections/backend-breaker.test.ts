// The circuit breaker's policy, exactly: N consecutive failures open it, a delay half-opens it, a
// budget of trials, M successes close it, a failed trial reopens it; non-transient errors don't count.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import client from 'prom-client';
import { BackendBreaker, BreakerOpenError } from '../../src/projections/consul/backend-breaker.js';

const fail = (): Promise<never> => Promise.reject(new Error('down'));
const ok = (): Promise<string> => Promise.resolve('ok');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function breaker(metrics = new client.Registry()): BackendBreaker {
  return new BackendBreaker({
    backend: 'test',
    metrics,
    policy: { failureThreshold: 5, resetTimeoutMs: 100, halfOpenMaxCalls: 3, successThreshold: 2 },
    retry: { retries: 0 },
    isTransient: (error) => (error as Error).message !== 'bad request',
  });
}

describe('backend breaker', () => {
  it('opens after 5 consecutive failures, and a success resets the count', async () => {
    const b = breaker();
    for (let i = 0; i < 4; i++) await assert.rejects(b.attempt(fail), /down/);
    await b.attempt(ok);
    for (let i = 0; i < 4; i++) await assert.rejects(b.attempt(fail), /down/);
    assert.equal(b.state, 'closed');
    await assert.rejects(b.attempt(fail), /down/);
    assert.equal(b.state, 'open');
    let called = false;
    await assert.rejects(
      b.attempt(() => {
        called = true;
        return ok();
      }),
      BreakerOpenError,
    );
    assert.equal(called, false);
    b.shutdown();
  });

  it('does not count non-transient errors against the circuit', async () => {
    const b = breaker();
    for (let i = 0; i < 10; i++) await assert.rejects(b.attempt(() => Promise.reject(new Error('bad request'))));
    assert.equal(b.state, 'closed');
    b.shutdown();
  });

  it('half-opens after the delay, admits 3 trials, closes after 2 successes', async () => {
    const metrics = new client.Registry();
    const b = breaker(metrics);
    for (let i = 0; i < 5; i++) await assert.rejects(b.attempt(fail));
    assert.equal(b.state, 'open');
    await sleep(150);
    assert.equal(b.state, 'half-open');
    // Three slow trials in flight at once; a fourth is refused.
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slow = (): Promise<string> => gate.then(() => 'ok');
    const trials = [b.attempt(slow), b.attempt(slow), b.attempt(slow)];
    await assert.rejects(b.attempt(ok), BreakerOpenError);
    release();
    await Promise.all(trials);
    assert.equal(b.state, 'closed');
    const text = await metrics.metrics();
    assert.match(text, /rollcall_circuit_breaker_state\{backend="test"\} 0/);
    assert.match(text, /rollcall_circuit_breaker_transitions_total\{backend="test",state="open"\} 1/);
    assert.match(text, /rollcall_circuit_breaker_transitions_total\{backend="test",state="half-open"\} 1/);
    assert.match(text, /rollcall_circuit_breaker_transitions_total\{backend="test",state="closed"\} 1/);
    assert.match(text, /rollcall_circuit_breaker_calls_total\{backend="test",outcome="rejected"\} 1/);
    b.shutdown();
  });

  it('reopens on a failed trial and half-opens again after the delay', async () => {
    const b = breaker();
    for (let i = 0; i < 5; i++) await assert.rejects(b.attempt(fail));
    await sleep(150);
    await b.attempt(ok);
    assert.equal(b.state, 'half-open');
    await assert.rejects(b.attempt(fail));
    assert.equal(b.state, 'open');
    await sleep(150);
    assert.equal(b.state, 'half-open');
    await b.attempt(ok);
    await b.attempt(ok);
    assert.equal(b.state, 'closed');
    b.shutdown();
  });

  it('retries transient failures with backoff, up to the limit', async () => {
    const b = new BackendBreaker({ backend: 'retry', metrics: new client.Registry(), retry: { retries: 2, baseDelayMs: 5, maxDelayMs: 20 } });
    let attempts = 0;
    const result = await b.call(async () => {
      if (++attempts < 3) throw new Error('flaky');
      return 'done';
    });
    assert.equal(result, 'done');
    assert.equal(attempts, 3);
    attempts = 0;
    await assert.rejects(
      b.call(async () => {
        attempts++;
        throw new Error('down');
      }),
    );
    assert.equal(attempts, 3);
    b.shutdown();
  });
});
