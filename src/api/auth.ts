// API authentication and authorization: who is calling (API key, JWT, a node's SVID over mTLS, or
// nobody on an open registry), what their scope allows, which namespace and node they may write, and
// how often they may ask.
//
// Hooks, in order: `onRequest` identifies the caller (headers and the TLS client certificate); the
// rate limiter counts per credential, or per address for callers without one; `preParsing` refuses
// the unauthenticated and the out-of-scope before a body is read; `preValidation` confines a
// namespaced credential to its namespace by checking, or filling in, the namespace of the query and
// body, then holds node writes to their node, as each write route declares it (`config.nodeWrite`;
// a write route without a declaration does not start): an SVID writes only its own node, and in
// enforce mode (signatureMode) node writes need the node itself or an admin. Every refusal is counted and, given
// an audit log, recorded there as `auth.denied`.
//
// A bearer credential, when sent, is the principal even on a connection with a client certificate:
// it is the request's own choice; the certificate must still verify.
import { X509Certificate as NodeX509Certificate } from 'node:crypto';
import { TLSSocket } from 'node:tls';
import rateLimit from '@fastify/rate-limit';
import type { FastifyContextConfig, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import client from 'prom-client';
import { RollcallError } from '../domain/errors.js';
import { isJsonObject } from '../domain/json.js';
import { isEnvelope } from '../domain/introspection.js';
import type { Writer } from '../intake/node-events.js';
import { metricOnce } from '../metrics.js';
import { ALL_NAMESPACES, isApiKeyScope, scopeAllows, type ApiKeyRing, type ApiKeyScope } from '../security/api-keys.js';
import type { AuditLog } from '../security/audit.js';
import { verifySvidChain } from '../security/ca.js';
import type { TrustAnchor, TrustSource } from '../security/introspection-verifier.js';
import { X509Certificate } from '../security/x509.js';

export const AUTH_MODES = ['auto', 'keys', 'off'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

/** `tlsClientAuth`: whether the TLS listener asks for client certificates (SVIDs), and whether it needs one. */
export const CLIENT_CERTIFICATE_MODES = ['off', 'optional', 'require'] as const;
export type ClientCertificateMode = (typeof CLIENT_CERTIFICATE_MODES)[number];

/** The node an SVID names: the only node its writes may name. */
export interface NodeBinding {
  namespace: string;
  nodeType: string;
  nodeId: string;
}

export interface Principal {
  kind: 'api_key' | 'jwt' | 'svid' | 'anonymous';
  /** Key id, `jwt:<sub>`, the SPIFFE ID of an SVID, or null for the anonymous caller of an open registry. */
  id: string | null;
  scopes: ApiKeyScope[];
  /** The namespace it may act in, or `*`. */
  namespace: string;
  /** An SVID's node (kind `svid` only). */
  node?: NodeBinding;
}

export type DenialReason =
  | 'missing'
  | 'malformed'
  | 'unknown'
  | 'revoked'
  | 'invalid_jwt'
  | 'scope'
  | 'namespace'
  | 'rate_limited'
  | 'certificate_missing'
  | 'certificate_invalid'
  | 'certificate_expired'
  | 'certificate_revoked'
  | 'node_identity'
  | 'node_identity_required';

export interface RequestAuth {
  /** Authentication was required for this request. */
  required: boolean;
  principal: Principal | null;
  failure: DenialReason | null;
  /** The TLS client certificate: not asked for (null), none presented, verified, or refused (see certificateError). */
  certificate: 'absent' | 'verified' | 'refused' | null;
  certificateError: RollcallError | null;
}

/** The node a write names, as far as the request says: namespace, node_id and, when given, node_type. */
export interface NodeTarget {
  namespace: string | undefined;
  node_id: string | undefined;
  node_type?: string | undefined;
}

/** What a route needs: a scope, or nothing (`public`). Routes may declare it in `config.auth`. */
export type AuthRequirement = { scope: ApiKeyScope } | 'public';

declare module 'fastify' {
  interface FastifyRequest {
    auth: RequestAuth | null;
    /**
     * Refuses a write of `target` the caller may not make (an SVID naming another node; enforce mode
     * without the node or an admin). For routes that learn their node only while handling (Consul
     * check updates); absent when authentication is not installed.
     */
    assertNodeWrite?: (target: NodeTarget) => void;
  }
  interface FastifyContextConfig {
    auth?: AuthRequirement;
    /** The node a write route writes, for node binding; see NodeWriteDeclaration. */
    nodeWrite?: NodeWriteDeclaration;
  }
}

export interface AuthOptions {
  keys: ApiKeyRing;
  mode: AuthMode;
  metrics: client.Registry;
  /** Requests per minute per credential; 0: unlimited. */
  rateLimitPerMinute: number;
  /** Requests per minute per address without a credential while authentication is required; 0: unlimited. */
  rateLimitAnonymousPerMinute: number;
  jwt?: { jwksUrl: string; issuer?: string | undefined; audience?: string | undefined } | undefined;
  /** Where refusals are recorded (action auth.denied); none when absent. */
  audit?: AuditLog;
  /** Client certificates (mTLS, `tlsClientAuth`): a verified SVID authenticates its node. None when absent. */
  clientCertificates?: ClientCertificateOptions | undefined;
  /**
   * signatureMode enforce: DAGI register, heartbeat and deregistration and the Consul agent writes
   * must come from the node itself (its SVID over mTLS) or an admin credential, audited as an operator.
   */
  requireNodeIdentity?: boolean;
}

export interface ClientCertificateOptions {
  /** optional: a certificate is asked for, and authenticates its node when it verifies; require: every non-public request needs one. */
  mode: Exclude<ClientCertificateMode, 'off'>;
  /** The CA certificates SVIDs must be issued by, and their revocations (as for signed envelopes). */
  trust: TrustSource;
  /** Namespace of an SVID whose subject names none. */
  defaultNamespace: string;
  /** Only SVIDs of this trust domain; any the bundle vouches for when absent. */
  trustDomain?: string | undefined;
  /** A connection's certificate is checked again (revocation, validity, a changed bundle) after this long; default 10 s. */
  recheckMs?: number;
}

const ANONYMOUS: Principal = { kind: 'anonymous', id: null, scopes: ['admin'], namespace: ALL_NAMESPACES };
const SVID_SCOPES: ApiKeyScope[] = ['nodes:read', 'nodes:write'];
const DEFAULT_RECHECK_MS = 10_000;
const PUBLIC_PATHS = new Set(['/', '/health', '/openapi.json']);
/** Cluster-wide information: only credentials of every namespace see it. */
const ALL_NAMESPACE_PATHS = new Set(['/metrics']);
/** Writes whose body namespace defaults to the credential's namespace. */
const BODY_NAMESPACE_PATHS = new Set(['/api/v1/nodes/register', '/api/v1/nodes/heartbeat']);

/** Reads the node a write names; null when the body is not an object (validation refuses it before anything is written). */
export type TargetReader = (request: FastifyRequest, principal: Principal) => NodeTarget | null;

/**
 * What a write route declares about the node it writes (`config.nodeWrite`), so node binding holds on
 * it: an SVID writes only its own node, and in enforce mode (signatureMode) node writes need the node
 * itself or an admin. Every write route a nodes:write credential may call must declare one; a route
 * without it fails at startup (`assertNodeWriteDeclared`).
 */
export type NodeWriteDeclaration =
  /** The route writes no node (profiles): an SVID, bound to its node, may not call it. */
  | 'none'
  | {
      /** Held to the node itself or an admin in enforce mode; introspection and events are not: their signatures are checked instead. */
      enforced: boolean;
      /** Where the node comes from: read from the request before validation, or `handler`: the route finds it and calls `request.assertNodeWrite`. */
      target: TargetReader | 'handler';
    };

/** A string field of a request part, or undefined. */
export function stringOf(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** The fields of a request part (query, params, body), or none when it is not an object. */
export function fieldsOf(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
}

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Refuses, when it is added (at startup), a write route a nodes:write credential may call that does
 * not say which node it writes: node binding must never be skipped silently. Admin and public routes
 * need none (an SVID has no admin scope; public routes have no principal).
 */
export function assertNodeWriteDeclared(route: { method: string | string[]; url: string; config?: FastifyContextConfig | undefined }): void {
  const methods = (Array.isArray(route.method) ? route.method : [route.method]).filter((method) => WRITE_METHODS.has(method));
  for (const method of methods) {
    const requirement = requirementOfRoute(method, route.url, route.config);
    if (requirement === 'public' || requirement.scope === 'admin' || route.config?.nodeWrite !== undefined) continue;
    throw new Error(
      `Route ${method} ${route.url} takes writes (scope ${requirement.scope}) but declares no config.nodeWrite: ` +
        "say which node it writes (a target reader, or 'handler') or that it writes none ('none'), so node binding holds on it.",
    );
  }
}

/** An operator: an API key or JWT with the admin scope (the anonymous caller of an open registry is none). */
function isOperator(principal: Principal): boolean {
  return (principal.kind === 'api_key' || principal.kind === 'jwt') && principal.scopes.includes('admin');
}

const CERTIFICATE_DENIALS: Partial<Record<string, DenialReason>> = {
  SVID_EXPIRED: 'certificate_expired',
  SVID_REVOKED: 'certificate_revoked',
};

interface CertificateCheck {
  checkedAt: number;
  bundle: readonly TrustAnchor[];
  /** The SVID principal with the end of its validity, the refusal, or null when the connection presented no certificate. */
  result: Promise<{ principal: Principal; notAfterMs: number } | RollcallError | null>;
}

/**
 * The client certificates of TLS connections, checked as SVIDs by the CA module's `verifySvidChain`
 * (issued by a CA of the trust bundle, valid now, one node SPIFFE ID, not revoked), once per
 * connection and again every `recheckMs`, when the bundle changes, or when it expires.
 */
class ClientCertificates {
  private readonly checks = new WeakMap<TLSSocket, CertificateCheck>();
  private roots: { list: readonly TrustAnchor[]; certificates: X509Certificate[] } | null = null;
  private readonly recheckMs: number;

  constructor(private readonly options: ClientCertificateOptions) {
    this.recheckMs = options.recheckMs ?? DEFAULT_RECHECK_MS;
  }

  async of(socket: TLSSocket): Promise<{ principal: Principal; notAfterMs: number } | RollcallError | null> {
    const bundle = await this.options.trust.trustBundle();
    const now = Date.now();
    const known = this.checks.get(socket);
    if (known && known.bundle === bundle && now - known.checkedAt < this.recheckMs) {
      const result = await known.result;
      if (result === null || result instanceof RollcallError || now <= result.notAfterMs) return result;
    }
    const check: CertificateCheck = { checkedAt: now, bundle, result: this.verify(socket, bundle) };
    this.checks.set(socket, check);
    // A failure of the registry (the revocation store away) is not the client's: ask again next time.
    check.result.catch(() => {
      if (this.checks.get(socket) === check) this.checks.delete(socket);
    });
    return check.result;
  }

  private async verify(socket: TLSSocket, bundle: readonly TrustAnchor[]): Promise<{ principal: Principal; notAfterMs: number } | RollcallError | null> {
    const peer = socket.getPeerX509Certificate();
    if (peer === undefined) return null;
    try {
      const svid = await verifySvidChain(peer.toString(), this.rootsOf(bundle), new Date(), this.options.trust);
      const { trustDomain } = this.options;
      if (trustDomain !== undefined && svid.trustDomain !== trustDomain) {
        throw new RollcallError('SVID_INVALID', `The SVID's trust domain ${svid.trustDomain} is not ${trustDomain}.`, { details: { reason: 'trust_domain', serial: svid.serial } });
      }
      // As for signed envelopes: an SVID without an O is bound to the default namespace, never to all.
      const namespace = svid.namespace ?? this.options.defaultNamespace;
      return {
        principal: { kind: 'svid', id: svid.spiffeId, scopes: SVID_SCOPES, namespace, node: { namespace, nodeType: svid.nodeType, nodeId: svid.nodeId } },
        notAfterMs: svid.notAfter.getTime(),
      };
    } catch (error) {
      if (!(error instanceof RollcallError) || !(error.code === 'SVID_INVALID' || error.code === 'SVID_EXPIRED' || error.code === 'SVID_REVOKED')) throw error;
      return new RollcallError(error.code, `The client certificate was refused: ${error.message}`, { ...(error.details ? { details: error.details } : {}) });
    }
  }

  /** The bundle as `verifySvidChain` takes it, converted once per bundle. */
  private rootsOf(list: readonly TrustAnchor[]): X509Certificate[] {
    if (this.roots?.list !== list) {
      const certificates = list.map((anchor) => (anchor instanceof X509Certificate ? anchor : new X509Certificate(anchor instanceof NodeX509Certificate ? anchor.raw : anchor.rawData)));
      this.roots = { list, certificates };
    }
    return this.roots.certificates;
  }
}

function requirementOf(request: FastifyRequest): AuthRequirement {
  return requirementOfRoute(request.method, request.routeOptions.url, request.routeOptions.config);
}

/** What a route needs: as it declares in `config.auth`, else public, admin or by method. */
function requirementOfRoute(method: string, url: string | undefined, config: FastifyContextConfig | undefined): AuthRequirement {
  const declared = config?.auth;
  if (declared) return declared;
  if (url !== undefined && PUBLIC_PATHS.has(url)) return 'public';
  if (url?.startsWith('/api/v1/admin/')) return { scope: 'admin' };
  return { scope: method === 'GET' || method === 'HEAD' ? 'nodes:read' : 'nodes:write' };
}

function isConsulPath(request: FastifyRequest): boolean {
  return request.url.startsWith('/v1/');
}

/** The credential: `Authorization: Bearer`, or on the Consul API `X-Consul-Token` or `?token=`. */
function credentialOf(request: FastifyRequest): string | undefined {
  const authorization = request.headers.authorization;
  if (typeof authorization === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    return match ? match[1] : '';
  }
  if (isConsulPath(request)) {
    const header = request.headers['x-consul-token'];
    if (typeof header === 'string' && header !== '') return header;
    const token = (request.query as Record<string, unknown> | undefined)?.token;
    if (typeof token === 'string' && token !== '') return token;
  }
  return undefined;
}

function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token);
}

export async function installAuth(app: FastifyInstance, options: AuthOptions): Promise<void> {
  const denials = metricOnce<client.Counter<'reason'>>(
    options.metrics,
    'rollcall_auth_denials_total',
    () =>
      new client.Counter({
        name: 'rollcall_auth_denials_total',
        help: 'API requests refused by authentication, authorization or rate limiting, by reason.',
        labelNames: ['reason'],
        registers: [options.metrics],
      }),
  );
  const jwks: JWTVerifyGetKey | null = options.jwt ? createRemoteJWKSet(new URL(options.jwt.jwksUrl)) : null;

  const deny = (reason: DenialReason, error: RollcallError, request: FastifyRequest, reply?: FastifyReply, target?: NodeTarget): RollcallError => {
    denials.inc({ reason });
    const principal = request.auth?.principal;
    // The route pattern, never the URL: a Consul client's ?token= must not reach the log.
    options.audit?.record({
      actor: principal?.id ?? `address:${request.ip}`,
      action: 'auth.denied',
      namespace: target?.namespace ?? (principal && principal.namespace !== ALL_NAMESPACES ? principal.namespace : null),
      ...(target?.node_id !== undefined ? { node_id: target.node_id } : {}),
      decision: 'denied',
      reason,
      details: { code: error.code, status: error.status, method: request.method, route: request.routeOptions.url ?? null },
      // A client hammering past its limit: the first refusal, then one summary a minute with the count.
      ...(reason === 'rate_limited' ? { coalesceKey: `rate_limited ${principal?.id ?? `address:${request.ip}`} ${request.method} ${request.routeOptions.url ?? ''}` } : {}),
    });
    if (error.code === 'UNAUTHENTICATED') void reply?.header('www-authenticate', 'Bearer realm="rollcall"');
    return error;
  };

  const certificates = options.clientCertificates ? new ClientCertificates(options.clientCertificates) : null;

  const required = async (): Promise<boolean> => {
    if (options.mode === 'off') return false;
    // Client certificates are a way to authenticate, as a JWKS is: once offered, callers need one or a key.
    if (options.mode === 'keys' || jwks !== null || certificates !== null) return true;
    return options.keys.hasKeys();
  };

  const verifyJwt = async (token: string): Promise<Principal | null> => {
    if (!jwks || !options.jwt) return null;
    try {
      const { payload } = await jwtVerify(token, jwks, {
        ...(options.jwt.issuer ? { issuer: options.jwt.issuer } : {}),
        ...(options.jwt.audience ? { audience: options.jwt.audience } : {}),
      });
      const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ').filter(isApiKeyScope) : [];
      const namespace = payload.namespace;
      if (scopes.length === 0 || typeof namespace !== 'string' || namespace === '') return null;
      return { kind: 'jwt', id: `jwt:${payload.sub ?? 'unknown'}`, scopes, namespace };
    } catch {
      return null;
    }
  };

  app.decorateRequest('auth', null);

  app.addHook('onRequest', async (request) => {
    // Public routes look at no credential, a client certificate included.
    let certificate: RequestAuth['certificate'] = null;
    let certificateError: RollcallError | null = null;
    let svid: Principal | null = null;
    const socket = request.raw.socket;
    if (certificates !== null && socket instanceof TLSSocket && requirementOf(request) !== 'public') {
      const checked = await certificates.of(socket);
      if (checked === null) {
        certificate = 'absent';
      } else if (checked instanceof RollcallError) {
        certificate = 'refused';
        certificateError = checked;
      } else {
        certificate = 'verified';
        svid = checked.principal;
      }
    }
    const token = credentialOf(request);
    const needed = await required();
    if (token === undefined) {
      request.auth = svid
        ? { required: needed, principal: svid, failure: null, certificate, certificateError }
        : needed
          ? { required: true, principal: null, failure: 'missing', certificate, certificateError }
          : { required: false, principal: ANONYMOUS, failure: null, certificate, certificateError };
      return;
    }
    let principal: Principal | null = null;
    let failure: DenialReason = 'malformed';
    if (token.startsWith('rk_')) {
      const check = await options.keys.check(token);
      if (check.ok) principal = { kind: 'api_key', id: check.key.id, scopes: [check.key.scope], namespace: check.key.namespace };
      else failure = check.reason;
    } else if (jwks && looksLikeJwt(token)) {
      principal = await verifyJwt(token);
      failure = 'invalid_jwt';
    }
    // An open registry ignores credentials it cannot read rather than refusing old clients that send one.
    request.auth = principal
      ? { required: needed, principal, failure: null, certificate, certificateError }
      : needed
        ? { required: true, principal: null, failure, certificate, certificateError }
        : { required: false, principal: svid ?? ANONYMOUS, failure: null, certificate, certificateError };
  });

  const perKey = options.rateLimitPerMinute;
  const anonymous = options.rateLimitAnonymousPerMinute;
  if (perKey > 0 || anonymous > 0) {
    await app.register(rateLimit, {
      global: true,
      timeWindow: 60_000,
      keyGenerator: (request) => {
        const principal = request.auth?.principal;
        return principal && principal.id !== null ? `credential:${principal.id}` : `address:${request.ip}`;
      },
      max: (request) => (request.auth?.principal?.id ? perKey : anonymous),
      allowList: (request) => {
        const auth = request.auth;
        if (auth?.principal?.id) return perKey === 0;
        // Without authentication there is no credential to count; addresses are limited only where keys are needed.
        return !auth?.required || anonymous === 0;
      },
      errorResponseBuilder: (request, context) =>
        deny(
          'rate_limited',
          new RollcallError('RATE_LIMITED', `Rate limit of ${context.max} requests a minute exceeded; retry in ${context.after}.`, {
            details: { limit: context.max, retry_after_seconds: Math.ceil(context.ttl / 1000) },
          }),
          request,
        ),
    });
  }

  app.addHook('preParsing', async (request, reply, payload) => {
    const requirement = requirementOf(request);
    if (requirement === 'public') return payload;
    const auth = request.auth;
    // A client certificate that does not verify is refused whatever else the request carries.
    if (auth?.certificateError) throw deny(CERTIFICATE_DENIALS[auth.certificateError.code] ?? 'certificate_invalid', auth.certificateError, request);
    if (options.clientCertificates?.mode === 'require' && auth?.certificate !== 'verified') {
      throw deny(
        'certificate_missing',
        new RollcallError(
          'CLIENT_CERTIFICATE_REQUIRED',
          'This registry requires a client certificate (tlsClientAuth require): connect over mTLS with an SVID issued by its CA (POST /api/v1/identity/svid).',
        ),
        request,
      );
    }
    const principal = auth?.principal;
    if (!principal) {
      const reason = auth?.failure ?? 'missing';
      const detail =
        reason === 'missing'
          ? 'Authentication required: send Authorization: Bearer <api key>' +
            (isConsulPath(request) ? ' or X-Consul-Token' : '') +
            (certificates ? ", or connect over mTLS with the node's SVID." : '.')
          : reason === 'revoked'
            ? 'The API key was revoked.'
            : 'The credential is not valid.';
      throw deny(reason, new RollcallError('UNAUTHENTICATED', detail, { details: { reason } }), request, reply);
    }
    if (!scopeAllows(principal.scopes, requirement.scope)) {
      throw deny(
        'scope',
        new RollcallError('FORBIDDEN_SCOPE', `This operation needs the ${requirement.scope} scope; the credential has ${principal.scopes.join(', ')}.`, {
          details: { required_scope: requirement.scope, scopes: principal.scopes },
        }),
        request,
      );
    }
    if (principal.namespace !== ALL_NAMESPACES && request.routeOptions.url !== undefined && ALL_NAMESPACE_PATHS.has(request.routeOptions.url)) {
      throw deny('namespace', forbiddenNamespace(principal.namespace, ALL_NAMESPACES), request);
    }
    return payload;
  });

  app.addHook('preValidation', async (request) => {
    const principal = request.auth?.principal;
    const url = request.routeOptions.url;
    if (!principal || principal.namespace === ALL_NAMESPACES || url === undefined || requirementOf(request) === 'public') return;
    const own = principal.namespace;
    const refuse = (named: unknown): never => {
      throw deny('namespace', forbiddenNamespace(own, typeof named === 'string' ? named : JSON.stringify(named)), request);
    };

    const parameter = isConsulPath(request) ? 'ns' : 'namespace';
    const query = request.query as Record<string, unknown> | undefined;
    if (query && typeof query === 'object') {
      const given = query[parameter];
      const reading = request.method === 'GET' || request.method === 'HEAD';
      if (given === undefined) {
        if (acceptsQuery(request, parameter)) query[parameter] = own;
      } else if (given === ALL_NAMESPACES && reading) {
        // Every namespace, as this credential sees it: its own.
        query[parameter] = own;
      } else if (given !== own) {
        refuse(given);
      }
    }

    const body = request.body;
    if (!isJsonObject(body)) return;
    if (url === '/api/v1/introspection') {
      const payload = isEnvelope(body) ? body.payload : body;
      if (!isJsonObject(payload)) return;
      const metadata = payload.metadata;
      const named = payload.namespace ?? (isJsonObject(metadata) && typeof metadata.namespace === 'string' ? metadata.namespace : undefined);
      // An envelope is left as sent (its signature covers it): the route defaults to the credential's namespace.
      if (named === undefined) {
        if (!isEnvelope(body)) payload.namespace = own;
      } else if (named !== own) refuse(named);
      return;
    }
    if ('namespace' in body) {
      if (body.namespace !== own) refuse(body.namespace);
    } else if (BODY_NAMESPACE_PATHS.has(url)) {
      body.namespace = own;
    }
  });

  /** Holds one write of `target` to its node: an SVID names only its own; enforce mode needs the node or an operator. */
  const checkNodeWrite = (request: FastifyRequest, write: { enforced: boolean }, target: NodeTarget | null): void => {
    const principal = request.auth?.principal;
    if (!principal) return;
    if (principal.node) {
      if (target !== null) {
        const named = mismatchesOf(principal.node, target);
        if (named.length > 0) throw deny('node_identity', nodeIdentityMismatch(principal, named, target), request, undefined, target);
      }
      return;
    }
    if (!options.requireNodeIdentity || !write.enforced) return;
    if (!isOperator(principal)) throw deny('node_identity_required', nodeIdentityRequired(target), request, undefined, target ?? undefined);
    options.audit?.record({
      actor: principal.id ?? 'anonymous',
      action: 'node.operator_write',
      namespace: target?.namespace ?? null,
      node_id: target?.node_id ?? null,
      decision: 'allowed',
      reason: 'admin credential writing a node (signatureMode enforce)',
      details: { method: request.method, route: request.routeOptions.url ?? null, credential: principal.kind },
    });
  };

  app.decorateRequest('assertNodeWrite', function assertNodeWrite(this: FastifyRequest, target: NodeTarget): void {
    checkNodeWrite(this, { enforced: true }, target);
  });

  app.addHook('preValidation', async (request) => {
    const principal = request.auth?.principal;
    const url = request.routeOptions.url;
    if (!principal || url === undefined || request.method === 'GET' || request.method === 'HEAD' || requirementOf(request) === 'public') return;
    // As the route declared it (config.nodeWrite); a write route without a declaration does not start.
    const write = request.routeOptions.config?.nodeWrite;
    if (principal.node) {
      if (write === undefined || write === 'none') {
        throw deny(
          'node_identity',
          new RollcallError(
            'NODE_IDENTITY_MISMATCH',
            `The client certificate is the SVID of ${principal.id ?? 'a node'}: it may write only its own node (register, heartbeat, introspection, events, deregistration, Consul agent service and check updates), not ${request.method} ${url}. Use an API key for this.`,
            {
              details: { spiffe_id: principal.id, method: request.method, route: url },
            },
          ),
          request,
        );
      }
      // A check update names a check: the route finds its node and asks `assertNodeWrite`.
      if (write.target !== 'handler') checkNodeWrite(request, write, write.target(request, principal));
      return;
    }
    if (!options.requireNodeIdentity || write === undefined || write === 'none' || !write.enforced) return;
    if (write.target === 'handler') {
      // An operator's check update is audited by the route's `assertNodeWrite`, once its node is known.
      if (!isOperator(principal)) checkNodeWrite(request, write, { namespace: stringOf(fieldsOf(request.query)[isConsulPath(request) ? 'ns' : 'namespace']), node_id: undefined });
      return;
    }
    let target: NodeTarget | null;
    try {
      target = write.target(request, principal);
    } catch {
      // An unreadable body: the refusal or the audit entry names no node, and validation refuses the write.
      target = null;
    }
    checkNodeWrite(request, write, target);
  });
}

/** What `target` names that is not the SVID's node; node_type only when the request names one. */
function mismatchesOf(node: NodeBinding, target: NodeTarget): string[] {
  const named: string[] = [];
  if (target.namespace !== node.namespace) named.push(`namespace ${target.namespace ?? '(none)'}`);
  if (target.node_id !== node.nodeId) named.push(`node_id ${target.node_id ?? '(none)'}`);
  if (target.node_type !== undefined && target.node_type !== node.nodeType) named.push(`node_type ${target.node_type}`);
  return named;
}

function nodeIdentityMismatch(principal: Principal, named: string[], target: NodeTarget): RollcallError {
  const node = principal.node as NodeBinding;
  return new RollcallError(
    'NODE_IDENTITY_MISMATCH',
    `The client certificate is the SVID of ${principal.id ?? 'a node'} (namespace ${node.namespace}): it may write only its own node, and this request names ${named.join(', ')}.`,
    {
      details: {
        spiffe_id: principal.id,
        node: { namespace: node.namespace, node_type: node.nodeType, node_id: node.nodeId },
        named: { namespace: target.namespace ?? null, node_id: target.node_id ?? null, node_type: target.node_type ?? null },
      },
    },
  );
}

function nodeIdentityRequired(target: NodeTarget | null): RollcallError {
  const which = target?.node_id === undefined ? 'a node' : `node ${target.node_id}`;
  return new RollcallError(
    'NODE_IDENTITY_REQUIRED',
    `signatureMode is enforce: ${which} may be written only by the node itself or by an operator. ` +
      "Send the node's signed envelope to POST /api/v1/introspection, connect over mTLS with the node's SVID, or use an admin key.",
    {
      details: {
        ...(target?.node_id === undefined ? {} : { node_id: target.node_id }),
        ...(target?.namespace === undefined ? {} : { namespace: target.namespace }),
        remedies: ['signed_envelope', 'mtls_svid', 'admin_key'],
      },
    },
  );
}

function forbiddenNamespace(own: string, named: string): RollcallError {
  return new RollcallError('FORBIDDEN_NAMESPACE', `The credential is for namespace ${own}; it cannot act in ${named === ALL_NAMESPACES ? 'every namespace' : `namespace ${named}`}.`, {
    details: { namespace: named, credential_namespace: own },
  });
}

/** Filling in a query parameter is safe when the route's query schema names it or has none. */
function acceptsQuery(request: FastifyRequest, parameter: string): boolean {
  const schema = request.routeOptions.schema?.querystring as { properties?: Record<string, unknown>; additionalProperties?: unknown } | undefined;
  if (!schema) return true;
  return (schema.properties !== undefined && parameter in schema.properties) || schema.additionalProperties !== false;
}

/** Loopback listeners may serve without credentials; anything else needs them or an explicit insecure. */
/** The namespace a request's credential is confined to, or null (every namespace, or no credential). */
export function credentialNamespace(request: FastifyRequest): string | null {
  const namespace = request.auth?.principal?.namespace;
  return namespace === undefined || namespace === ALL_NAMESPACES ? null : namespace;
}

/** Who sends a request, as the intake names its writer: the principal authentication established, or nobody (authentication not installed). */
export function writerOf(request: FastifyRequest): Writer | null {
  return request.auth?.principal ?? null;
}

export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  return bare === 'localhost' || bare === '::1' || /^127\.\d+\.\d+\.\d+$/.test(bare) || /^::ffff:127\.\d+\.\d+\.\d+$/.test(bare);
}
