// What intake, relay and agent rely on from any event bus; run against Kafka and the in-process bus.
import { strict as assert } from 'node:assert';
import { after, test } from 'node:test';
import type { BusMessage, EventBus } from '../../src/bus/bus.js';
import { pollUntil } from '../support/processes.js';

const until = (ok: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<boolean> =>
  pollUntil(
    async () => ok(),
    (value) => value,
    { timeoutMs, what },
  );

/** `names` makes a fresh topic or group name: one the broker's test clean-up knows of, for Kafka. */
export function busContract(name: string, open: () => Promise<EventBus>, names: (kind: string) => string): void {
  let bus: EventBus;
  const fresh = (): string => names('contract');

  test(`${name}: opens`, async () => {
    bus = await open();
    assert.equal((await bus.health()).ok, true);
  });
  after(async () => {
    await bus.close();
  });

  test(`${name}: a group reads from the earliest message, in order per key, with headers`, async () => {
    const topic = fresh();
    await bus.ensureTopics([{ name: topic, partitions: 3 }]);
    await bus.ensureTopics([{ name: topic, partitions: 3 }]);
    const sent = Array.from({ length: 60 }, (_, i) => ({ key: `node-${i % 5}`, value: JSON.stringify({ i }), headers: { 'content-type': 'application/json', seq: String(i) } }));
    await bus.publish(topic, sent.slice(0, 30));
    await bus.publish(topic, sent.slice(30));
    const got: BusMessage[] = [];
    const subscription = await bus.subscribe({ group: fresh(), topics: [topic], start: 'earliest', handler: async (batch) => void got.push(...batch) });
    await until(() => got.length >= 60, 20_000, 'all 60 messages');
    await subscription.close();
    assert.equal(got.length, 60);
    for (let node = 0; node < 5; node++) {
      const order = got.filter((message) => message.key === `node-${node}`).map((message) => (JSON.parse(message.value) as { i: number }).i);
      assert.deepEqual(
        order,
        sent.map((_, i) => i).filter((i) => i % 5 === node),
        `order of node-${node}`,
      );
    }
    const first = got.find((message) => message.headers.seq === '0');
    assert.equal(first?.headers['content-type'], 'application/json');
    assert.equal(first?.topic, topic);
  });

  test(`${name}: every group sees every message; a group resumes after what it committed`, async () => {
    const topic = fresh();
    await bus.ensureTopics([{ name: topic, partitions: 2 }]);
    await bus.publish(
      topic,
      Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: String(i) })),
    );
    const group = fresh();
    const a: string[] = [];
    const b: string[] = [];
    const first = await bus.subscribe({ group, topics: [topic], start: 'earliest', handler: async (batch) => void a.push(...batch.map((m) => m.value)) });
    const other = await bus.subscribe({ group: fresh(), topics: [topic], start: 'earliest', handler: async (batch) => void b.push(...batch.map((m) => m.value)) });
    await until(() => a.length >= 10 && b.length >= 10, 20_000, 'both groups read all');
    await first.close();
    await other.close();
    await bus.publish(topic, [{ key: 'k-late', value: 'late' }]);
    const again: string[] = [];
    const resumed = await bus.subscribe({ group, topics: [topic], start: 'earliest', handler: async (batch) => void again.push(...batch.map((m) => m.value)) });
    await until(() => again.length >= 1, 20_000, 'the late message');
    await new Promise((resolve) => setTimeout(resolve, 500));
    await resumed.close();
    assert.deepEqual(again, ['late'], 'only what was not committed comes again');
  });

  test(`${name}: a failed handler gets the same batch again; nothing is skipped`, async () => {
    const topic = fresh();
    await bus.ensureTopics([{ name: topic, partitions: 1 }]);
    let failures = 0;
    const done: string[] = [];
    const errors: Error[] = [];
    const subscription = await bus.subscribe({
      group: fresh(),
      topics: [topic],
      start: 'earliest',
      handler: async (batch) => {
        if (batch.some((message) => message.value === 'poison') && failures < 2) {
          failures++;
          throw new Error('store away');
        }
        done.push(...batch.map((message) => message.value));
      },
      onError: (error) => errors.push(error),
    });
    await bus.publish(topic, [
      { key: 'a', value: 'one' },
      { key: 'a', value: 'poison' },
      { key: 'a', value: 'three' },
    ]);
    await until(() => done.includes('three'), 20_000, 'delivery after failures');
    await subscription.close();
    assert.equal(failures, 2);
    assert.ok(errors.length >= 2, 'failures are reported');
    assert.deepEqual(
      done.filter((value) => value === 'poison'),
      ['poison'],
      'handled once it succeeded',
    );
    assert.ok(done.indexOf('one') < done.indexOf('poison') && done.indexOf('poison') < done.indexOf('three'));
  });

  test(`${name}: members of one group subscribed to different topics each get their own topic's messages`, async () => {
    // Two registries with different topic prefixes that share the default group id.
    const [first, second] = [fresh(), fresh()];
    await bus.ensureTopics([
      { name: first, partitions: 2 },
      { name: second, partitions: 2 },
    ]);
    const group = fresh();
    const gotFirst: string[] = [];
    const gotSecond: string[] = [];
    const a = await bus.subscribe({ group, topics: [first], start: 'earliest', handler: async (batch) => void gotFirst.push(...batch.map((m) => `${m.topic}:${m.value}`)) });
    await a.ready;
    const b = await bus.subscribe({ group, topics: [second], start: 'earliest', handler: async (batch) => void gotSecond.push(...batch.map((m) => `${m.topic}:${m.value}`)) });
    await b.ready;
    await bus.publish(
      first,
      Array.from({ length: 6 }, (_, i) => ({ key: `k${i}`, value: String(i) })),
    );
    await bus.publish(
      second,
      Array.from({ length: 6 }, (_, i) => ({ key: `k${i}`, value: String(i) })),
    );
    await until(() => gotFirst.length >= 6 && gotSecond.length >= 6, 30_000, 'both topics consumed');
    await a.close();
    await b.close();
    assert.ok(
      gotFirst.every((entry) => entry.startsWith(`${first}:`)),
      'a member reads only what it subscribed to',
    );
    assert.ok(gotSecond.every((entry) => entry.startsWith(`${second}:`)));
  });

  test(`${name}: start latest skips what was published before the subscription`, async () => {
    const topic = fresh();
    await bus.ensureTopics([{ name: topic, partitions: 1 }]);
    await bus.publish(topic, [{ key: null, value: 'old' }]);
    const got: string[] = [];
    const subscription = await bus.subscribe({ group: fresh(), topics: [topic], start: 'latest', handler: async (batch) => void got.push(...batch.map((m) => m.value)) });
    await subscription.ready;
    // Kafka resolves "latest" at the first fetch after joining: publish until it is seen.
    await until(
      async () => {
        if (!got.includes('new')) await bus.publish(topic, [{ key: null, value: 'new' }]);
        return got.includes('new');
      },
      20_000,
      'a message after subscribing',
    );
    await subscription.close();
    assert.equal(got.includes('old'), false);
  });
}
