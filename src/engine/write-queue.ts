// Group commit: writes that arrive while transactions are in flight go together in the next one.
// Up to `concurrency` transactions run at once; the store orders their versions.
import { RollcallError, isRollcallError } from '../domain/errors.js';
import type { NodeWrite, WriteOutcome } from '../store/store.js';

interface Pending {
  write: NodeWrite;
  resolve: (outcome: WriteOutcome) => void;
  reject: (error: unknown) => void;
}

export type CommitBatch = (writes: NodeWrite[]) => Promise<WriteOutcome[]>;

export class WriteQueue {
  private pending: Pending[] = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly idleWaiters: Array<() => void> = [];

  constructor(
    private readonly commit: CommitBatch,
    private readonly maxBatch: number,
    private readonly concurrency: number,
    private readonly onBatch: (size: number) => void = () => undefined,
  ) {}

  get depth(): number {
    return this.pending.length;
  }

  submit(write: NodeWrite): Promise<WriteOutcome> {
    return new Promise((resolve, reject) => {
      this.pending.push({ write, resolve, reject });
      if (!this.scheduled && this.inFlight < this.concurrency) {
        // Yield once so writes submitted in the same tick share a transaction.
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.pump();
        });
      }
    });
  }

  /** Resolves once everything submitted so far is committed (or failed). */
  idle(): Promise<void> {
    if (this.pending.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.pending.length > 0 && this.inFlight < this.concurrency) {
      const batch = this.pending.splice(0, this.maxBatch);
      this.inFlight += 1;
      this.onBatch(batch.length);
      void this.run(batch);
    }
    if (this.pending.length === 0 && this.inFlight === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
  }

  private async run(batch: Pending[]): Promise<void> {
    try {
      const outcomes = await this.commit(batch.map((item) => item.write));
      batch.forEach((item, index) => item.resolve(outcomes[index] as WriteOutcome));
    } catch (cause) {
      const error = isRollcallError(cause)
        ? cause
        : new RollcallError('STORE_UNAVAILABLE', `The store could not commit the write: ${(cause as Error).message}`, { cause });
      for (const item of batch) item.reject(error);
    } finally {
      this.inFlight -= 1;
      this.pump();
    }
  }
}
