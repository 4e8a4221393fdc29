// One error type for everything rollcall refuses or fails at: a stable code, an HTTP status, context.

export const ERROR_CODES = {
  VALIDATION_FAILED: 400,
  MALFORMED_JSON: 400,
  /** The request's headers and body did not arrive within requestTimeoutMs; the connection is closed. */
  REQUEST_TIMEOUT: 408,
  /** The request line, a header or the framing is not HTTP Node's parser accepts; the connection is closed. */
  MALFORMED_REQUEST: 400,
  /** The request's headers are larger than the server takes (Node's maxHeaderSize); the connection is closed. */
  HEADERS_TOO_LARGE: 431,
  MALFORMED_EVENT: 400,
  UNKNOWN_EVENT_TYPE: 400,
  EVENT_TOO_LARGE: 413,
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
  BUS_UNAVAILABLE: 503,
  /** Atomic Consul mode: Consul refused the write or its circuit is open; nothing was written. */
  CONSUL_UNAVAILABLE: 503,
  CONFIG_INVALID: 500,
  /** Another process (a server, or a CLI command) has the embedded data folder open. */
  DATA_DIR_LOCKED: 409,
  INTERNAL: 500,
  /** No credential, or an unknown, revoked or invalid one. */
  UNAUTHENTICATED: 401,
  /** The credential's scope does not allow the operation. */
  FORBIDDEN_SCOPE: 403,
  /** The request names a namespace the credential does not cover. */
  FORBIDDEN_NAMESPACE: 403,
  RATE_LIMITED: 429,
  API_KEY_NOT_FOUND: 404,
  /** Identity: the join token is unknown, expired or used up. */
  JOIN_TOKEN_INVALID: 401,
  /** Identity: the join token does not allow the node_type asked for. */
  JOIN_TOKEN_FORBIDDEN: 403,
  /** Identity: the CSR is not PEM PKCS#10, its self-signature fails, or it asks for another identity. */
  CSR_INVALID: 400,
  /** Identity: the certificate does not chain to the trust bundle or carries no valid SPIFFE ID. */
  SVID_INVALID: 401,
  SVID_EXPIRED: 401,
  SVID_REVOKED: 401,
  /** mTLS (tlsClientAuth require): the connection presented no client certificate. */
  CLIENT_CERTIFICATE_REQUIRED: 401,
  /** The caller is a node's SVID (mTLS): it wrote, or named, another node than its own. */
  NODE_IDENTITY_MISMATCH: 403,
  /** signatureMode enforce: a node write from neither the node itself (SVID, signed envelope) nor an admin credential. */
  NODE_IDENTITY_REQUIRED: 403,
  /** Identity: no CA is configured (caCertFile/caKeyFile). */
  CA_NOT_CONFIGURED: 503,
  /** `ca init` refuses to overwrite an existing CA. */
  CA_EXISTS: 409,
  REVOCATION_INVALID: 400,
  /** A namespace policy that does not compile, or does not yield a bool; nothing was saved. */
  POLICY_INVALID: 400,
  /** The namespace's admission policy refused the registration (or failed to evaluate). */
  POLICY_DENIED: 403,
  /** The namespace has no policy yet (or not the version asked for). */
  POLICY_NOT_FOUND: 404,
  /** A new node would exceed the namespace's quota; 403 as Kubernetes' ResourceQuota: retrying won't help. */
  QUOTA_EXCEEDED: 403,
  /** Signed introspection (enforce mode): the event carries no security block. */
  SIGNATURE_REQUIRED: 401,
  /** The signature does not match the envelope, or the security block is malformed. */
  SIGNATURE_INVALID: 401,
  /** The signing SVID is expired, not yet valid, malformed, or not issued by the trust bundle's CA. */
  CERTIFICATE_INVALID: 401,
  CERTIFICATE_REVOKED: 401,
  /** The signing SVID names another node_type, node_id or namespace than the payload. */
  IDENTITY_MISMATCH: 403,
  /** This event id was already received from this SPIFFE ID within the replay window. */
  REPLAYED_EVENT: 409,
  /** signed_at lies outside the registry's clock window (signatureMaxSkewSeconds). */
  STALE_EVENT: 400,
  /** An event came on the Kafka topics of another namespace than its own (kafkaNamespaceTopics). */
  NAMESPACE_MISMATCH: 403,
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
