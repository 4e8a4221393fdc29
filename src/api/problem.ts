// Maps every failure to an application/problem+json document (RFC 9457) with a stable code.
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RollcallError, isRollcallError, type ErrorCode } from '../domain/errors.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail: string;
  instance: string;
  details?: Record<string, unknown>;
}

const TITLES: Partial<Record<ErrorCode, string>> = {
  VALIDATION_FAILED: 'The request is not valid',
  MALFORMED_JSON: 'The body is not valid JSON',
  REQUEST_TIMEOUT: 'The request took too long to arrive',
  MALFORMED_REQUEST: 'The request is not well-formed HTTP',
  HEADERS_TOO_LARGE: 'The request headers are too large',
  PAYLOAD_TOO_LARGE: 'The body is too large',
  UNSUPPORTED_MEDIA_TYPE: 'Unsupported content type',
  NODE_NOT_FOUND: 'No such node',
  PROFILE_NOT_FOUND: 'No such profile',
  ROUTE_NOT_FOUND: 'No such endpoint',
  STALE_INCARNATION: 'Stale incarnation',
  REGISTRATION_REQUIRED: 'Registration required',
  VERSION_GONE: 'Topology version no longer retained',
  STORE_UNAVAILABLE: 'The store is unavailable',
  CONSUL_UNAVAILABLE: 'Consul is unavailable',
  SHUTTING_DOWN: 'The registry is shutting down',
  UNAUTHENTICATED: 'Authentication required',
  FORBIDDEN_SCOPE: 'The credential lacks the scope',
  FORBIDDEN_NAMESPACE: 'The credential does not cover this namespace',
  RATE_LIMITED: 'Too many requests',
  POLICY_DENIED: 'Refused by the namespace policy',
  POLICY_INVALID: 'The policy is not valid',
  QUOTA_EXCEEDED: 'Namespace quota exceeded',
  SIGNATURE_REQUIRED: 'A signed envelope is required',
  SIGNATURE_INVALID: 'The signature does not match',
  CERTIFICATE_INVALID: 'The certificate is not trusted',
  CERTIFICATE_REVOKED: 'The certificate is revoked',
  IDENTITY_MISMATCH: 'The identity does not match the payload',
  SVID_INVALID: 'The certificate is not a valid SVID',
  SVID_EXPIRED: 'The certificate has expired',
  SVID_REVOKED: 'The certificate is revoked',
  CLIENT_CERTIFICATE_REQUIRED: 'A client certificate is required',
  NODE_IDENTITY_MISMATCH: "The credential is another node's",
  NODE_IDENTITY_REQUIRED: 'Only the node itself or an operator may write it',
  REPLAYED_EVENT: 'The event was seen before',
  STALE_EVENT: 'The event is outside the time window',
  JOIN_TOKEN_INVALID: 'The join token is not valid',
  JOIN_TOKEN_FORBIDDEN: 'The join token does not allow this',
  CSR_INVALID: 'The certificate request is not valid',
  INTERNAL: 'Internal error',
};

export function problemOf(error: RollcallError, instance: string): Problem {
  return {
    type: `urn:rollcall:problem:${error.code.toLowerCase().replace(/_/g, '-')}`,
    title: TITLES[error.code] ?? error.code,
    status: error.status,
    code: error.code,
    detail: error.message,
    instance,
    ...(error.details ? { details: error.details } : {}),
  };
}

/** Turns what Fastify itself rejects (parsing, limits, schema validation) into our errors. */
function toRollcallError(error: FastifyError): RollcallError {
  if (isRollcallError(error)) return error;
  if (error.validation) {
    const errors = error.validation.slice(0, 10).map((item) => ({
      path: `${error.validationContext ?? 'body'}${item.instancePath || ''}`,
      message: item.message ?? 'is invalid',
      ...(item.params && 'additionalProperty' in item.params ? { property: item.params.additionalProperty } : {}),
    }));
    const first = errors[0];
    return new RollcallError('VALIDATION_FAILED', first ? `${first.path} ${first.message}${'property' in first ? ` (${String(first.property)})` : ''}` : error.message, {
      details: { errors },
    });
  }
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new RollcallError('PAYLOAD_TOO_LARGE', error.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new RollcallError('UNSUPPORTED_MEDIA_TYPE', `${error.message}; send application/json.`);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new RollcallError('VALIDATION_FAILED', 'The body is empty; a JSON object is required.');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new RollcallError('MALFORMED_JSON', error.message);
    case 'FST_ERR_BAD_URL':
      return new RollcallError('VALIDATION_FAILED', `The path is not valid: ${error.message}.`);
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new RollcallError('VALIDATION_FAILED', `A path parameter is too long: ${error.message}.`);
  }
  if (error instanceof SyntaxError || error.statusCode === 400) return new RollcallError('MALFORMED_JSON', `The body is not valid JSON: ${error.message}`);
  if (error.statusCode === 413) return new RollcallError('PAYLOAD_TOO_LARGE', error.message);
  if (error.statusCode === 415) return new RollcallError('UNSUPPORTED_MEDIA_TYPE', error.message);
  return new RollcallError('INTERNAL', 'An internal error occurred.', { cause: error });
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, error: RollcallError): FastifyReply {
  return reply.code(error.status).type(PROBLEM_CONTENT_TYPE).send(problemOf(error, request.url));
}

/** Fastify's `frameworkErrors` option: errors raised while routing (a bad URL encoding, an over-long parameter) as problems too. */
export function sendFrameworkProblem(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  void sendProblem(reply, request, toRollcallError(error));
}

/**
 * Fastify's `clientErrorHandler`, for what fails before a request reaches a route, answered with a
 * problem document: a request whose headers and body did not arrive within requestTimeoutMs (408
 * REQUEST_TIMEOUT), headers past Node's maxHeaderSize (431 HEADERS_TOO_LARGE), and any other HTTP
 * Node's parser refuses (400 MALFORMED_REQUEST). The connection is closed either way.
 */
export function sendClientErrorProblem(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  // A response already under way cannot be replaced by another.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && inFlight?.headersSent !== true) {
    const problem = problemOf(clientErrorOf(error), '');
    const body = JSON.stringify(problem);
    socket.write(
      `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? ''}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}

/** The problem of a client error: by Node's code (ERR_HTTP_REQUEST_TIMEOUT, HPE_HEADER_OVERFLOW, other HPE_* of llhttp). */
function clientErrorOf(error: Error & { code?: string }): RollcallError {
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new RollcallError('REQUEST_TIMEOUT', "The request's headers and body did not arrive in time; the connection is closed.");
  if (error.code === 'HPE_HEADER_OVERFLOW') return new RollcallError('HEADERS_TOO_LARGE', 'The request headers are larger than the server takes; the connection is closed.');
  // The parser's reason (Invalid method, Invalid header value char, …) says what; the code says which.
  const reason = 'reason' in error && typeof error.reason === 'string' ? error.reason : error.message;
  return new RollcallError('MALFORMED_REQUEST', `The request is not well-formed HTTP (${reason}); the connection is closed.`, error.code ? { details: { parser_code: error.code } } : {});
}

export function installProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const mapped = toRollcallError(error);
    if (mapped.status >= 500) request.log.error({ err: error, code: mapped.code }, 'request failed');
    return sendProblem(reply, request, mapped);
  });
  app.setNotFoundHandler((request, reply) => sendProblem(reply, request, new RollcallError('ROUTE_NOT_FOUND', `No endpoint ${request.method} ${request.url.split('?')[0] ?? ''}.`)));
}
