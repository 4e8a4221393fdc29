// A sleep that can be cut short: a projection's loop waits for its next interval or for news
// (a new topology version, a stop), whichever comes first.
export class Alarm {
  private ring: (() => void) | null = null;

  /** Resolves after `ms`, or at the next ring(); the timer never keeps the process alive. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.ring = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.ring = done;
    });
  }

  /** Ends the current sleep now (nothing happens when none is under way). */
  wake(): void {
    this.ring?.();
  }
}
