// A virtual clock for the engine (its Clock interface over @sinonjs/fake-timers' standalone clock):
// time moves only when a test moves it, every timer fires at exactly its due time, and the run a
// timer started (a sweep, a flush) settles before time moves past it. Nothing global is faked, so
// the store, the write queue's setImmediate and node:test itself run on real time.
import { createClock } from '@sinonjs/fake-timers';
import type { Clock } from '../../src/engine/clock.js';

export interface VirtualClock extends Clock {
  /** Moves time forward by `ms` (see advanceTo). */
  advance(ms: number): Promise<void>;
  /**
   * Moves time to `atMs`, stopping at each timer due on the way: the timer fires at its own time, and
   * the run it started settles before time moves on.
   */
  advanceTo(atMs: number): Promise<void>;
}

export function virtualClock(startMs: number): VirtualClock {
  const fake = createClock(startMs);
  const timers = new Set<{ dueAt: number }>();
  const runs = new Set<Promise<unknown>>();
  const settle = async (): Promise<void> => {
    while (runs.size > 0) await Promise.allSettled([...runs]);
  };
  const clock: VirtualClock = {
    now: () => fake.now,
    setInterval(tick, intervalMs) {
      const timer = { dueAt: fake.now + intervalMs };
      const id = fake.setInterval(() => {
        timer.dueAt += intervalMs;
        const run = tick();
        if (run instanceof Promise) {
          runs.add(run);
          void run.finally(() => runs.delete(run)).catch(() => undefined);
        }
      }, intervalMs);
      timers.add(timer);
      return () => {
        fake.clearInterval(id);
        timers.delete(timer);
      };
    },
    advance: (ms) => clock.advanceTo(fake.now + ms),
    async advanceTo(atMs) {
      if (atMs < fake.now) throw new Error(`the virtual clock is at ${fake.now}; it cannot go back to ${atMs}`);
      for (;;) {
        const next = Math.min(...[...timers].map((timer) => timer.dueAt));
        if (!(next <= atMs)) break;
        await fake.tickAsync(next - fake.now);
        await settle();
      }
      await fake.tickAsync(atMs - fake.now);
    },
  };
  return clock;
}
