// Whether writes go through, for /health: the outcome of the latest client write while it is fresh,
// else an active probe of the write path (the store, and the saga's backend in front of it).
import { isRollcallError } from '../domain/errors.js';

export interface WriteHealthOptions {
  /** Throws when a write would fail now; writes nothing a reader could see. */
  probe: () => Promise<void>;
  /** How long a write's outcome (or a probe that passed) stands before the write path is probed again. */
  freshForMs: number;
  now: () => number;
}

export interface WriteFailure {
  /** The error code a client got (STORE_UNAVAILABLE, CONSUL_UNAVAILABLE, ...). */
  code: string;
  message: string;
  at: string;
}

export interface WriteHealthReport {
  status: 'healthy' | 'unhealthy';
  /** What decided the status: the latest client write, or a probe when no write was recent. */
  checked_by: 'writes' | 'probe';
  last_success_at: string | null;
  /** The latest failure, kept after recovery as a clue. */
  last_error: WriteFailure | null;
  [detail: string]: unknown;
}

interface Outcome {
  ok: boolean;
  at: number;
}

export class WriteHealth {
  private lastWrite: Outcome | null = null;
  private lastProbe: Outcome | null = null;
  private lastSuccessAt: number | null = null;
  private lastError: WriteFailure | null = null;
  private probing: Promise<Outcome> | null = null;

  constructor(private readonly options: WriteHealthOptions) {}

  /** Records how `write` settles: a failure of the write path, or a success (a client's fault is neither). */
  track<T>(write: Promise<T>): Promise<T> {
    write.then(
      () => {
        this.lastWrite = this.succeeded();
      },
      (error: unknown) => {
        if (isRollcallError(error) && error.status < 500) return;
        this.lastWrite = this.failed(error);
      },
    );
    return write;
  }

  /** The status of the write path, probing it when no recent write tells (concurrent checks share one probe). */
  async check(): Promise<WriteHealthReport> {
    const now = this.options.now();
    const fresh = (outcome: Outcome | null): outcome is Outcome => outcome !== null && now - outcome.at < this.options.freshForMs;
    let decided: Outcome;
    let checkedBy: WriteHealthReport['checked_by'] = 'writes';
    if (fresh(this.lastWrite)) {
      decided = this.lastWrite;
    } else {
      checkedBy = 'probe';
      // A probe that passed stands a while; a failing write path is probed at every check, to see it recover.
      decided = fresh(this.lastProbe) && this.lastProbe.ok ? this.lastProbe : await this.probe();
    }
    return {
      status: decided.ok ? 'healthy' : 'unhealthy',
      checked_by: checkedBy,
      last_success_at: this.lastSuccessAt === null ? null : new Date(this.lastSuccessAt).toISOString(),
      last_error: this.lastError,
    };
  }

  private probe(): Promise<Outcome> {
    this.probing ??= this.options
      .probe()
      .then(
        () => this.succeeded(),
        (error: unknown) => this.failed(error),
      )
      .then((outcome) => {
        this.lastProbe = outcome;
        this.probing = null;
        return outcome;
      });
    return this.probing;
  }

  private succeeded(): Outcome {
    const at = this.options.now();
    this.lastSuccessAt = at;
    return { ok: true, at };
  }

  private failed(error: unknown): Outcome {
    const at = this.options.now();
    this.lastError = {
      code: isRollcallError(error) ? error.code : 'STORE_UNAVAILABLE',
      message: error instanceof Error ? error.message : String(error),
      at: new Date(at).toISOString(),
    };
    return { ok: false, at };
  }
}
