// The composition root's one stack of closers: what started last stops first, a failing or hung
// closer is reported, and every closer after it still runs.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { Closers } from '../../src/server.js';
import { testLogger } from '../support/logger.js';

describe('Closers', () => {
  it('runs closers last-pushed first, each once', async () => {
    const closers = new Closers(testLogger);
    const ran: string[] = [];
    for (const name of ['store', 'engine', 'intake', 'api']) closers.push(name, () => ran.push(name));
    assert.deepEqual(await closers.close(), []);
    assert.deepEqual(ran, ['api', 'intake', 'engine', 'store']);
    // Emptied: a second close runs nothing again.
    assert.deepEqual(await closers.close(), []);
    assert.equal(ran.length, 4);
  });

  it('collects failures, thrown or rejected, and skips none of the closers after them', async () => {
    const closers = new Closers(testLogger);
    const ran: string[] = [];
    closers.push('store', () => ran.push('store'));
    closers.push('bus', async () => {
      ran.push('bus');
      throw new Error('broker gone');
    });
    closers.push('engine', () => {
      ran.push('engine');
      throw new Error('queue stuck');
    });
    const failures = await closers.close();
    assert.deepEqual(ran, ['engine', 'bus', 'store']);
    assert.deepEqual(
      failures.map((f) => [f.name, f.error.message]),
      [
        ['engine', 'queue stuck'],
        ['bus', 'broker gone'],
      ],
    );
  });

  it('bounds a closer that never finishes and goes on with the next', async () => {
    const closers = new Closers(testLogger, 20);
    const ran: string[] = [];
    closers.push('store', () => ran.push('store'));
    closers.push('hung', () => new Promise(() => undefined));
    const failures = await closers.close();
    assert.deepEqual(ran, ['store']);
    assert.deepEqual(
      failures.map((f) => f.name),
      ['hung'],
    );
    assert.match(failures[0]?.error.message ?? '', /did not finish within 20 ms/);
  });
});
