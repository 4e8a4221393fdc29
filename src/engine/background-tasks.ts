// The engine's periodic duties (heartbeat flush, lease sweep, cleanup, view tail): each runs on the
// engine's clock, one run at a time, and keeps the state /health shows.
import type { Logger } from 'pino';
import type { CancelTimer, Clock } from './clock.js';

export const TASK_NAMES = ['heartbeat_flusher', 'lease_sweeper', 'cleanup', 'live_view_tail'] as const;
export type TaskName = (typeof TASK_NAMES)[number];

export interface TaskState {
  running: boolean;
  lastRunAt: number | null;
  lastError: string | null;
}

export class BackgroundTasks {
  readonly states = Object.fromEntries(TASK_NAMES.map((name) => [name, { running: false, lastRunAt: null, lastError: null }])) as Record<TaskName, TaskState>;
  private readonly timers: CancelTimer[] = [];
  /** Runs under way, which stop() waits for. */
  private readonly runs = new Set<Promise<void>>();
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Runs `run` every `intervalMs`; a tick that finds the previous run still going is skipped. The clock gets each run's promise. */
  every(task: TaskName, intervalMs: number, run: () => Promise<unknown>): void {
    let busy = false;
    const state = this.states[task];
    state.running = true;
    this.timers.push(
      this.clock.setInterval(() => {
        if (busy || this.stopped) return;
        busy = true;
        const running = run()
          .then(() => {
            state.lastError = null;
          })
          .catch((error: unknown) => {
            state.lastError = (error as Error).message;
            this.log.warn({ err: error, task }, 'background task failed');
          })
          .finally(() => {
            state.lastRunAt = this.clock.now();
            busy = false;
            this.runs.delete(running);
          });
        this.runs.add(running);
        return running;
      }, intervalMs),
    );
  }

  /**
   * No run starts from now on; resolves once the runs under way have finished (they use the store,
   * which closes after the engine: one still running then would hold a connection the close waits for).
   */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const cancel of this.timers) cancel();
    this.timers.length = 0;
    await Promise.all(this.runs);
  }

  /** Marks every task as not running, once the engine has stopped. */
  markStopped(): void {
    for (const state of Object.values(this.states)) state.running = false;
  }
}
