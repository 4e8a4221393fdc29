// Time as the engine sees it: what time it is and when to run again. The system clock serves; a test
// hands in a virtual one, and leases, sweeps and flushes follow it to the millisecond.

/** Stops a timer the clock started; calling it again does nothing. */
export type CancelTimer = () => void;

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /**
   * Calls `tick` every `intervalMs` until cancelled. A timer never keeps the process alive. `tick` may
   * return the promise of the run it started: a virtual clock lets it settle before time moves on.
   */
  setInterval(tick: () => unknown, intervalMs: number): CancelTimer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setInterval(tick, intervalMs) {
    const timer = setInterval(tick, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  },
};
