// Keeps the live view caught up with the store: loads it, follows the store's version notices and
// reads the changes the view lacks (all of them again when the log was pruned past the view).
import type { Logger } from 'pino';
import type { Store } from '../store/store.js';
import type { TaskState } from './background-tasks.js';
import type { Clock } from './clock.js';
import type { LiveView } from './live-view.js';

/** The store as the tail reads it. */
export type TailStore = Pick<Store, 'loadNodes' | 'changesSince' | 'watchVersions'>;

export interface ViewTailOptions {
  store: TailStore;
  view: LiveView;
  clock: Clock;
  logger: Logger;
  /** The state /health shows for the tail. */
  state: TaskState;
}

export class ViewTail {
  private unwatch: (() => Promise<void>) | null = null;
  private catchingUp: Promise<void> | null = null;
  private catchUpAgain = false;
  private stopped = false;

  constructor(private readonly options: ViewTailOptions) {}

  /** Loads the view and follows the store's version notices. */
  async start(): Promise<void> {
    const { store, view, logger } = this.options;
    const loaded = await store.loadNodes();
    view.load(loaded.nodes, loaded.version);
    logger.info({ nodes: loaded.nodes.length, version: loaded.version }, 'live view loaded');
    this.unwatch = await store.watchVersions((version) => {
      if (version > view.version) this.scheduleCatchUp();
    });
    this.options.state.running = true;
  }

  /** Catches up in the background, reporting a failure in the tail's state. */
  scheduleCatchUp(): void {
    if (this.stopped) return;
    this.catchUp().catch((error: unknown) => {
      this.options.state.lastError = (error as Error).message;
      this.options.logger.warn({ err: error }, 'live view catch-up failed');
    });
  }

  /** Brings the live view up to the store's version; concurrent callers share one run. */
  catchUp(): Promise<void> {
    if (this.catchingUp) {
      this.catchUpAgain = true;
      return this.catchingUp;
    }
    const { store, view, state } = this.options;
    this.catchingUp = (async () => {
      try {
        do {
          this.catchUpAgain = false;
          for (;;) {
            const page = await store.changesSince(view.version, 1000);
            if (view.version < page.prunedThrough) {
              const loaded = await store.loadNodes();
              view.load(loaded.nodes, loaded.version);
              continue;
            }
            if (page.changes.length === 0) break;
            if (!view.apply(page.changes)) throw new Error(`topology log has a gap after version ${view.version}`);
          }
        } while (this.catchUpAgain);
        state.lastRunAt = this.options.clock.now();
        state.lastError = null;
      } finally {
        this.catchingUp = null;
      }
    })();
    return this.catchingUp;
  }

  /** Stops following the store; a catch-up under way finishes first (the store closes after this). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.unwatch) await this.unwatch().catch(() => undefined);
    this.unwatch = null;
    if (this.catchingUp) await this.catchingUp.catch(() => undefined);
  }
}
