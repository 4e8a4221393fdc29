// What a PostgreSQL error (from pg or PGlite) says about the store: refused by a store that answered,
// or unreachable. SQLSTATE classes are those of PostgreSQL's Appendix A.
import { RollcallError } from '../domain/errors.js';
import type { WriteFailure } from './store.js';

export const SQLSTATE_CLASSES = {
  connectionException: '08',
  dataException: '22',
  integrityConstraintViolation: '23',
  invalidTransactionState: '25',
  transactionRollback: '40',
  insufficientResources: '53',
  programLimitExceeded: '54',
  objectNotInPrerequisiteState: '55',
  operatorIntervention: '57',
  systemError: '58',
  configurationFileError: 'F0',
  internalError: 'XX',
} as const;

/** The content of a write is at fault: a value out of range or unencodable, a constraint, a size limit. */
const CONTENT_CLASSES: readonly string[] = [SQLSTATE_CLASSES.dataException, SQLSTATE_CLASSES.integrityConstraintViolation, SQLSTATE_CLASSES.programLimitExceeded];

/**
 * The store cannot be used for any write right now: connections, resources, shutdown, a read-only
 * server (25006 after a failover), lock timeouts, its own failures.
 */
const OUTAGE_CLASSES: readonly string[] = [
  SQLSTATE_CLASSES.connectionException,
  SQLSTATE_CLASSES.invalidTransactionState,
  SQLSTATE_CLASSES.insufficientResources,
  SQLSTATE_CLASSES.objectNotInPrerequisiteState,
  SQLSTATE_CLASSES.operatorIntervention,
  SQLSTATE_CLASSES.systemError,
  SQLSTATE_CLASSES.configurationFileError,
  SQLSTATE_CLASSES.internalError,
];

/** Errors of the client side that mean the server could not be reached: sockets, the pool, a closed database. */
const CONNECTION_ERROR = /connect|terminated|not queryable|pool|closed/i;

/**
 * The session a query went out on is gone (ended by an administrator or a server restart, or the
 * socket closed): another connection may well answer.
 */
export function isLostConnection(error: unknown): boolean {
  const sqlstate = sqlstateOf(error);
  if (sqlstate !== null) return sqlstate === '57P01' || sqlstate === '57P02' || sqlstate.startsWith(SQLSTATE_CLASSES.connectionException);
  return error instanceof Error && /terminated|connection.*(ended|closed)/i.test(error.message);
}

/** The SQLSTATE of an error the server (or PGlite) answered with, or null for any other error. */
export function sqlstateOf(error: unknown): string | null {
  if (error === null || typeof error !== 'object' || !('severity' in error)) return null;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : null;
}

/** The writes of the failed transaction, as an error names them: in words, and as details (node_id, namespace). */
export interface WriteSubject {
  text: string;
  details: Record<string, unknown>;
}

/**
 * Judges an error of a write transaction: `unavailable` when it names an outage, `refused` when it
 * names the content; for anything else, whether the store still answers (`ping`) decides.
 */
export async function judgeWriteFailure(error: unknown, subject: WriteSubject, ping: () => Promise<void>): Promise<WriteFailure> {
  const sqlstate = sqlstateOf(error);
  const message = error instanceof Error ? error.message : String(error);
  if (sqlstate !== null) {
    const sqlClass = sqlstate.slice(0, 2);
    if (OUTAGE_CLASSES.includes(sqlClass)) return { kind: 'unavailable' };
    if (CONTENT_CLASSES.includes(sqlClass)) {
      return {
        kind: 'refused',
        error: new RollcallError('VALIDATION_FAILED', `The store refused ${subject.text}: ${message} (SQLSTATE ${sqlstate}).`, { cause: error, details: { ...subject.details, sqlstate } }),
      };
    }
    // Serialisation failures and deadlocks (class 40) and the rest: the server answered, so a
    // smaller batch may pass; alone, the write may be tried again.
    return {
      kind: 'refused',
      error: new RollcallError('STORE_UNAVAILABLE', `The store could not commit ${subject.text}: ${message} (SQLSTATE ${sqlstate}).`, { cause: error, details: { ...subject.details, sqlstate } }),
    };
  }
  const errno = (error as { code?: unknown } | null)?.code;
  if ((typeof errno === 'string' && /^E[A-Z]+$/.test(errno)) || CONNECTION_ERROR.test(message)) return { kind: 'unavailable' };
  try {
    await ping();
  } catch {
    return { kind: 'unavailable' };
  }
  return { kind: 'refused', error: new RollcallError('INTERNAL', `The store could not commit ${subject.text}: ${message}`, { cause: error, details: subject.details }) };
}
