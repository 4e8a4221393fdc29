// Group commit: writes that arrive while transactions are in flight go together in the next one.
// Up to `concurrency` transactions run at once; the store orders their versions.
// A failed write fails alone: when the store refuses a batch but still answers, the batch is split in
// halves, each committed on its own, until the writes at fault are alone and get their own error; when
// the store cannot be reached, the whole batch fails at once. A rolled-back transaction takes no
// version, so the topology log stays gap-free whatever is retried.
import { RollcallError, isRollcallError } from '../domain/errors.js';
import type { NodeWrite, WriteFailure, WriteOutcome } from '../store/store.js';

interface Pending {
  write: NodeWrite;
  resolve: (outcome: WriteOutcome) => void;
  reject: (error: unknown) => void;
}

export type CommitBatch = (writes: NodeWrite[]) => Promise<WriteOutcome[]>;
/** Tells an outage from a refusal of the batch's content (Store.judgeWriteFailure). */
export type JudgeFailure = (error: unknown, writes: NodeWrite[]) => Promise<WriteFailure>;

const UNAVAILABLE: WriteFailure = { kind: 'unavailable' };

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
    /** Without one, every failure is an outage: the batch fails whole. */
    private readonly judge: JudgeFailure = () => Promise.resolve(UNAVAILABLE),
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
      await this.attempt(batch);
    } finally {
      this.inFlight -= 1;
      this.pump();
    }
  }

  /**
   * Commits `batch` in one transaction. When the store refuses it, commits its halves one after the
   * other (in order, within this batch's slot), so writes of one node keep their order.
   */
  private async attempt(batch: Pending[]): Promise<void> {
    const writes = batch.map((item) => item.write);
    let outcomes: WriteOutcome[];
    try {
      outcomes = await this.commit(writes);
    } catch (cause) {
      // Our own errors are deliberate answers (the write committed, the view could not follow): never retried.
      const failure = isRollcallError(cause) ? null : await this.judge(cause, writes).catch(() => UNAVAILABLE);
      if (failure?.kind === 'refused' && batch.length > 1) {
        const middle = Math.ceil(batch.length / 2);
        await this.attempt(batch.slice(0, middle));
        await this.attempt(batch.slice(middle));
        return;
      }
      const error = isRollcallError(cause)
        ? cause
        : failure?.kind === 'refused'
          ? failure.error
          : new RollcallError('STORE_UNAVAILABLE', `The store could not commit the write: ${(cause as Error).message}`, { cause });
      for (const item of batch) item.reject(error);
      return;
    }
    batch.forEach((item, index) => item.resolve(outcomes[index] as WriteOutcome));
  }
}
