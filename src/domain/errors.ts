// One error type for everything rollcall refuses or fails at: a stable code, an HTTP status, context.

export const ERROR_CODES = {
  VALIDATION_FAILED: 400,
  MALFORMED_JSON: 400,
  UNSUPPORTED_MEDIA_TYPE: 415,
  PAYLOAD_TOO_LARGE: 413,
  NODE_NOT_FOUND: 404,
  PROFILE_NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  STALE_INCARNATION: 409,
  REGISTRATION_REQUIRED: 409,
  VERSION_GONE: 410,
  STORE_UNAVAILABLE: 503,
  REGISTRY_UNAVAILABLE: 503,
  SHUTTING_DOWN: 503,
  CONFIG_INVALID: 500,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorOptions {
  cause?: unknown;
  /** Machine-readable context returned to the client (field names, versions, ids). */
  details?: Record<string, unknown>;
}

export class RollcallError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RollcallError';
    this.code = code;
    this.status = ERROR_CODES[code];
    this.details = options.details;
  }
}

export function isRollcallError(error: unknown): error is RollcallError {
  return error instanceof RollcallError;
}
