// The registry's check of signed envelopes: the SVID chains to the trust bundle, is valid now and
// not revoked, names the node the payload claims to be, signed these exact bytes recently, and the
// event was not seen before. Both intakes (HTTP and the event bus) call it before writing.
//
// Namespace rule: the SPIFFE ID (`spiffe://<trust-domain>/node/<node_type>/<node_id>`) has no
// namespace, so the SVID's subject carries it as its organization (`O=<namespace>`), set by the
// CA from the join token's namespace. An SVID without an O is bound to the registry's default
// namespace, so a certificate never grants more than one namespace and fails closed.
//
// Replay rule: an event id (per SPIFFE ID) is remembered for twice the clock skew, the whole span
// in which its `signed_at` can pass the window. On the bus, the same message delivered again (same
// topic, partition and offset, after a failed batch or a rebalance) is a redelivery, not a replay.
import { createHash, X509Certificate, type webcrypto } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import client from 'prom-client';
import { RollcallError, type ErrorCode } from '../domain/errors.js';
import type { Envelope } from '../domain/schemas.js';
import { metricOnce } from '../metrics.js';
import { SIGNATURE_ALGORITHM, securityOf, uriSans, verifyEnvelopeSignature } from './signing.js';

/** WebCrypto's key type (the DOM lib is not loaded). */
type CryptoKey = webcrypto.CryptoKey;

export const SIGNATURE_MODES = ['off', 'permissive', 'enforce'] as const;
export type SignatureMode = (typeof SIGNATURE_MODES)[number];

/** The codes a signature check refuses with; each is a 4xx, so the bus intake dead-letters it. */
export const SIGNATURE_REJECTION_CODES = [
  'SIGNATURE_REQUIRED',
  'SIGNATURE_INVALID',
  'CERTIFICATE_INVALID',
  'CERTIFICATE_REVOKED',
  'IDENTITY_MISMATCH',
  'REPLAYED_EVENT',
  'STALE_EVENT',
] as const satisfies readonly ErrorCode[];
export type SignatureRejectionCode = (typeof SIGNATURE_REJECTION_CODES)[number];

/** A CA certificate of the trust bundle: Node's X509Certificate, or anything exposing its DER (`@peculiar/x509`). */
export type TrustAnchor = X509Certificate | { rawData: ArrayBuffer };

/** Where trust comes from: the CA module, or PEM files (FileTrustSource). */
export interface TrustSource {
  trustBundle(): Promise<readonly TrustAnchor[]>;
  /** `serial` is lowercase hexadecimal without separators; `notBeforeMs` lets a SPIFFE ID revocation spare later SVIDs. */
  isRevoked(serial: string, spiffeId: string, notBeforeMs: number): boolean | Promise<boolean>;
}

/** Who the event says it is about, as the intake parsed it from the payload. */
export interface ClaimedIdentity {
  namespace: string;
  node_id: string;
  /** Heartbeats carry none; checked when present. */
  node_type?: string | undefined;
}

export interface VerifiedIdentity {
  spiffeId: string;
  trustDomain: string;
  namespace: string;
  nodeType: string;
  nodeId: string;
  serial: string;
}

export interface VerifyContext {
  source: 'http' | 'bus';
  /** The message's place on the bus (`topic/partition/offset`): a redelivery of it is no replay. */
  position?: string;
}

/** What the audit log (or anyone else) hears about each failed check. */
export interface SignatureRejection {
  code: SignatureRejectionCode;
  message: string;
  mode: Exclude<SignatureMode, 'off'>;
  /** True in permissive mode: the event was counted and logged, then accepted. */
  accepted: boolean;
  source: VerifyContext['source'];
  eventId: string | null;
  eventType: string | null;
  spiffeId: string | null;
  claimed: ClaimedIdentity;
  at: Date;
}

export interface IntrospectionVerifierOptions {
  mode: SignatureMode;
  /** Required unless the mode is `off`. */
  trustSource: TrustSource | null;
  /** `signed_at` may be this far from the registry's clock either way. */
  maxSkewMs: number;
  /** Most (SPIFFE ID, event id) pairs remembered against replay. */
  replayCacheSize: number;
  /** Namespace of an SVID that names none. */
  defaultNamespace: string;
  logger: Logger;
  /** Prometheus registry the rejection counter joins. */
  metrics: client.Registry;
  /** Called for every failed check (the audit log's seam); must not throw, a rejected promise is logged. */
  onRejection?: (rejection: SignatureRejection) => void | Promise<void>;
  /** Only SVIDs of this trust domain are accepted; any trust domain the bundle vouches for when absent. */
  trustDomain?: string;
  /** The namespace an SVID is bound to; default: its subject's OU, else `defaultNamespace`. */
  namespaceOf?: (certificate: X509Certificate) => string | null;
  /** Parsed certificates kept, by PEM hash; default 10 000. */
  certificateCacheSize?: number;
  now?: () => number;
}

interface ParsedSvid {
  certificate: X509Certificate;
  spiffeId: string;
  trustDomain: string;
  nodeType: string;
  nodeId: string;
  namespace: string | null;
  serial: string;
  notBefore: number;
  notAfter: number;
  key: Promise<CryptoKey>;
  /** Fingerprint of the bundle CA that was found to have issued it. */
  issuer: string | null;
}

interface Anchor {
  certificate: X509Certificate;
  fingerprint: string;
  notBefore: number;
  notAfter: number;
}

const SPIFFE_NODE_ID = /^spiffe:\/\/([a-z0-9._-]+)\/node\/([^/]+)\/([^/]+)$/;

function reject(code: SignatureRejectionCode, message: string): RollcallError {
  return new RollcallError(code, message);
}

function dateOf(text: string): number {
  return Date.parse(text);
}

/** The subject's O (the namespace the SVID was issued for), when there is exactly one. */
export function namespaceFromSubject(certificate: X509Certificate): string | null {
  const units = (certificate.subject ?? '')
    .split('\n')
    .filter((line) => line.startsWith('O='))
    .map((line) => line.slice(2));
  return units.length === 1 ? (units[0] as string) : null;
}

export class IntrospectionVerifier {
  readonly mode: SignatureMode;
  private readonly replay: LRUCache<string, string>;
  private readonly svids: LRUCache<string, ParsedSvid>;
  private readonly anchorsByObject = new WeakMap<object, Anchor>();
  private lastBundle: { list: readonly TrustAnchor[]; anchors: Anchor[] } | null = null;
  private readonly rejections: client.Counter<'reason' | 'mode'>;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(private readonly options: IntrospectionVerifierOptions) {
    this.mode = options.mode;
    if (this.mode !== 'off' && options.trustSource === null) {
      throw new RollcallError('CONFIG_INVALID', `Signature mode ${this.mode} needs a trust bundle (trustBundleFile).`, { details: { field: 'signatureMode' } });
    }
    this.now = options.now ?? Date.now;
    this.replay = new LRUCache({ max: Math.max(1, options.replayCacheSize), ttl: Math.max(1, 2 * options.maxSkewMs) });
    this.svids = new LRUCache({ max: options.certificateCacheSize ?? 10_000 });
    this.log = options.logger.child({ component: 'introspection-verifier' });
    const registers = [options.metrics];
    this.rejections = metricOnce(
      options.metrics,
      'rollcall_signature_rejections_total',
      () =>
        new client.Counter({
          name: 'rollcall_signature_rejections_total',
          help: 'Envelopes failing signature verification, by reason (error code) and mode (permissive ones were accepted anyway).',
          labelNames: ['reason', 'mode'],
          registers,
        }),
    );
  }

  /**
   * Checks `event` (null: a bare payload, unsigned) against `claim`. Off: does nothing. Enforce:
   * throws the RollcallError of the first failed check. Permissive: reports failures, returns null.
   */
  async verify(event: Envelope | null, claim: ClaimedIdentity, context: VerifyContext): Promise<VerifiedIdentity | null> {
    if (this.mode === 'off') return null;
    try {
      return await this.check(event, claim, context);
    } catch (error) {
      if (!(error instanceof RollcallError) || !(SIGNATURE_REJECTION_CODES as readonly string[]).includes(error.code)) throw error;
      this.report(error.code as SignatureRejectionCode, error.message, event, claim, context);
      if (this.mode === 'enforce') throw error;
      return null;
    }
  }

  /** Lets the event be sent again: its write failed on the registry's side (a 5xx), not the sender's. */
  forget(event: Envelope | null): void {
    const spiffeId = event ? securityOf(event)?.spiffe_id : undefined;
    if (event && typeof spiffeId === 'string') this.replay.delete(`${spiffeId}\n${event.event_id}`);
  }

  private async check(event: Envelope | null, claim: ClaimedIdentity, context: VerifyContext): Promise<VerifiedIdentity> {
    const security = event ? securityOf(event) : null;
    if (event === null || security === null) throw reject('SIGNATURE_REQUIRED', "The event is unsigned; send an OnexEnvelopeV1 with a security block signed by the node's SVID.");
    const { spiffe_id: spiffeId, svid_certificate: pem, signature, signature_algorithm: algorithm, signed_at: signedAt } = security;
    if (typeof spiffeId !== 'string' || typeof pem !== 'string' || typeof signature !== 'string' || typeof signedAt !== 'string') {
      throw reject('SIGNATURE_INVALID', 'The security block needs spiffe_id, svid_certificate, signature and signed_at strings.');
    }
    if (algorithm !== SIGNATURE_ALGORITHM) throw reject('SIGNATURE_INVALID', `Unsupported signature_algorithm ${JSON.stringify(algorithm)}; only ${SIGNATURE_ALGORITHM} is accepted.`);
    const now = this.now();
    const signedAtMs = Date.parse(signedAt);
    if (Number.isNaN(signedAtMs)) throw reject('SIGNATURE_INVALID', 'signed_at is not a date.');
    if (Math.abs(now - signedAtMs) > this.options.maxSkewMs) {
      throw reject('STALE_EVENT', `signed_at ${signedAt} is more than ${this.options.maxSkewMs / 1000} s from the registry's clock.`);
    }

    const svid = this.parse(pem);
    if (now < svid.notBefore || now > svid.notAfter) {
      throw reject('CERTIFICATE_INVALID', `The SVID is valid from ${new Date(svid.notBefore).toISOString()} to ${new Date(svid.notAfter).toISOString()}, not now.`);
    }
    await this.checkChain(svid, now);
    if (spiffeId !== svid.spiffeId) throw reject('IDENTITY_MISMATCH', `security.spiffe_id ${spiffeId} is not the SVID's ${svid.spiffeId}.`);
    if (await this.options.trustSource?.isRevoked(svid.serial, svid.spiffeId, svid.notBefore)) {
      throw reject('CERTIFICATE_REVOKED', `The SVID ${svid.serial} of ${svid.spiffeId} is revoked.`);
    }

    const namespace = svid.namespace ?? this.options.defaultNamespace;
    if (this.options.trustDomain !== undefined && svid.trustDomain !== this.options.trustDomain) {
      throw reject('IDENTITY_MISMATCH', `The SVID's trust domain ${svid.trustDomain} is not ${this.options.trustDomain}.`);
    }
    const mismatches: string[] = [];
    if (claim.node_id !== svid.nodeId) mismatches.push(`node_id ${claim.node_id}`);
    if (claim.node_type !== undefined && claim.node_type !== svid.nodeType) mismatches.push(`node_type ${claim.node_type}`);
    if (claim.namespace !== namespace) mismatches.push(`namespace ${claim.namespace}`);
    if (event.source_node_id !== undefined && event.source_node_id !== svid.nodeId) mismatches.push(`source_node_id ${event.source_node_id}`);
    if (mismatches.length > 0) {
      throw reject('IDENTITY_MISMATCH', `The event claims ${mismatches.join(', ')}, but is signed by ${svid.spiffeId} (namespace ${namespace}).`);
    }

    if (!(await verifyEnvelopeSignature(event, signature, await svid.key))) {
      throw reject('SIGNATURE_INVALID', 'The signature does not match the envelope: it was altered or signed with another key.');
    }

    // Only events with a valid signature are remembered, so forged ids cannot block real ones.
    const replayKey = `${svid.spiffeId}\n${event.event_id}`;
    const seenAt = this.replay.get(replayKey);
    if (seenAt !== undefined && (context.position === undefined || seenAt !== context.position)) {
      throw reject('REPLAYED_EVENT', `Event ${event.event_id} of ${svid.spiffeId} was already received.`);
    }
    this.replay.set(replayKey, context.position ?? '');
    return { spiffeId: svid.spiffeId, trustDomain: svid.trustDomain, namespace, nodeType: svid.nodeType, nodeId: svid.nodeId, serial: svid.serial };
  }

  /** The SVID of a PEM, parsed once per distinct PEM. */
  private parse(pem: string): ParsedSvid {
    const hash = createHash('sha256').update(pem).digest('base64');
    const cached = this.svids.get(hash);
    if (cached) return cached;
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(pem);
    } catch (error) {
      throw reject('CERTIFICATE_INVALID', `svid_certificate is not a PEM X.509 certificate: ${(error as Error).message}`);
    }
    if (certificate.ca) throw reject('CERTIFICATE_INVALID', 'svid_certificate is a CA certificate, not an SVID.');
    const key = certificate.publicKey;
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw reject('CERTIFICATE_INVALID', "The SVID's key is not an ECDSA P-256 key.");
    }
    const spiffeIds = uriSans(certificate.subjectAltName).filter((uri) => uri.startsWith('spiffe://'));
    const match = spiffeIds.length === 1 ? SPIFFE_NODE_ID.exec(spiffeIds[0] as string) : null;
    if (match === null) throw reject('CERTIFICATE_INVALID', 'The SVID needs exactly one URI SAN of the form spiffe://<trust-domain>/node/<node_type>/<node_id>.');
    let nodeType: string;
    let nodeId: string;
    try {
      nodeType = decodeURIComponent(match[2] as string);
      nodeId = decodeURIComponent(match[3] as string);
    } catch {
      throw reject('CERTIFICATE_INVALID', "The SVID's SPIFFE ID is not a valid URI path.");
    }
    const svid: ParsedSvid = {
      certificate,
      spiffeId: spiffeIds[0] as string,
      trustDomain: match[1] as string,
      nodeType,
      nodeId,
      namespace: (this.options.namespaceOf ?? namespaceFromSubject)(certificate),
      serial: certificate.serialNumber.toLowerCase(),
      notBefore: dateOf(certificate.validFrom),
      notAfter: dateOf(certificate.validTo),
      key: crypto.subtle.importKey('spki', key.export({ type: 'spki', format: 'der' }), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']),
      issuer: null,
    };
    // A failed import surfaces where the key is awaited; keep it from being an unhandled rejection meanwhile.
    svid.key.catch(() => undefined);
    this.svids.set(hash, svid);
    return svid;
  }

  /** The SVID was issued (signed) by a CA of the current bundle that is valid now. */
  private async checkChain(svid: ParsedSvid, now: number): Promise<void> {
    const anchors = await this.anchors();
    const valid = (anchor: Anchor): boolean => now >= anchor.notBefore && now <= anchor.notAfter;
    const known = svid.issuer === null ? undefined : anchors.find((anchor) => anchor.fingerprint === svid.issuer);
    if (known && valid(known)) return;
    for (const anchor of anchors) {
      if (valid(anchor) && svid.certificate.checkIssued(anchor.certificate) && svid.certificate.verify(anchor.certificate.publicKey)) {
        svid.issuer = anchor.fingerprint;
        return;
      }
    }
    throw reject('CERTIFICATE_INVALID', `The SVID of ${svid.spiffeId} was not issued by a currently valid CA of the trust bundle.`);
  }

  private async anchors(): Promise<Anchor[]> {
    const list = await (this.options.trustSource as TrustSource).trustBundle();
    if (this.lastBundle?.list === list) return this.lastBundle.anchors;
    const anchors: Anchor[] = [];
    for (const item of list) {
      let anchor = this.anchorsByObject.get(item);
      if (!anchor) {
        const certificate = item instanceof X509Certificate ? item : new X509Certificate(Buffer.from(item.rawData));
        anchor = { certificate, fingerprint: certificate.fingerprint256, notBefore: dateOf(certificate.validFrom), notAfter: dateOf(certificate.validTo) };
        this.anchorsByObject.set(item, anchor);
      }
      // Only CA certificates vouch for others.
      if (anchor.certificate.ca) anchors.push(anchor);
    }
    this.lastBundle = { list, anchors };
    return anchors;
  }

  private report(code: SignatureRejectionCode, message: string, event: Envelope | null, claim: ClaimedIdentity, context: VerifyContext): void {
    const mode = this.mode as Exclude<SignatureMode, 'off'>;
    const spiffeId = event ? securityOf(event)?.spiffe_id : undefined;
    const rejection: SignatureRejection = {
      code,
      message,
      mode,
      accepted: mode === 'permissive',
      source: context.source,
      eventId: event?.event_id ?? null,
      eventType: event?.event_type ?? null,
      spiffeId: typeof spiffeId === 'string' ? spiffeId.slice(0, 512) : null,
      claimed: claim,
      at: new Date(this.now()),
    };
    this.rejections.inc({ reason: code, mode });
    this.log.warn(
      { code, reason: message, source: context.source, eventId: rejection.eventId, spiffeId: rejection.spiffeId, namespace: claim.namespace, nodeId: claim.node_id },
      mode === 'enforce' ? 'signed event rejected' : 'signature check failed; accepted (permissive mode)',
    );
    if (this.options.onRejection) {
      try {
        const pending = this.options.onRejection(rejection);
        if (pending instanceof Promise) pending.catch((err: unknown) => this.log.warn({ err }, 'signature rejection listener failed'));
      } catch (err) {
        this.log.warn({ err }, 'signature rejection listener failed');
      }
    }
  }
}

/**
 * Trust from files: a PEM bundle of CA certificates and, optionally, a revocation list (one serial
 * in hex or one SPIFFE ID per line, `#` comments). Both are read again when they change, checked
 * at most once per `reloadIntervalMs`.
 */
export class FileTrustSource implements TrustSource {
  private bundle: { mtimeMs: number; certificates: X509Certificate[] };
  private revoked: { mtimeMs: number; entries: Set<string> } | null;
  private checkedAt = 0;

  constructor(
    private readonly bundleFile: string,
    private readonly revocationFile?: string,
    private readonly reloadIntervalMs = 1000,
  ) {
    try {
      this.bundle = this.readBundle();
      this.revoked = revocationFile === undefined ? null : this.readRevoked(revocationFile);
    } catch (cause) {
      if (cause instanceof RollcallError) throw cause;
      throw new RollcallError('CONFIG_INVALID', `Cannot read the trust files: ${(cause as Error).message}`, { cause, details: { field: 'trustBundleFile' } });
    }
  }

  async trustBundle(): Promise<readonly X509Certificate[]> {
    this.refresh();
    return this.bundle.certificates;
  }

  async isRevoked(serial: string, spiffeId: string): Promise<boolean> {
    this.refresh();
    const entries = this.revoked?.entries;
    return entries !== undefined && (entries.has(serial.toLowerCase()) || entries.has(spiffeId));
  }

  private refresh(): void {
    const now = Date.now();
    if (now - this.checkedAt < this.reloadIntervalMs) return;
    this.checkedAt = now;
    try {
      if (statSync(this.bundleFile).mtimeMs !== this.bundle.mtimeMs) this.bundle = this.readBundle();
      if (this.revocationFile !== undefined && statSync(this.revocationFile).mtimeMs !== this.revoked?.mtimeMs) this.revoked = this.readRevoked(this.revocationFile);
    } catch {
      // A file being rewritten: keep what was read last, and look again at the next check.
    }
  }

  private readBundle(): { mtimeMs: number; certificates: X509Certificate[] } {
    const mtimeMs = statSync(this.bundleFile).mtimeMs;
    const pem = readFileSync(this.bundleFile, 'utf8');
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (blocks.length === 0) throw new RollcallError('CONFIG_INVALID', `Trust bundle ${this.bundleFile} holds no PEM certificate.`, { details: { field: 'trustBundleFile' } });
    return { mtimeMs, certificates: blocks.map((block) => new X509Certificate(block)) };
  }

  private readRevoked(file: string): { mtimeMs: number; entries: Set<string> } {
    const mtimeMs = statSync(file).mtimeMs;
    const entries = new Set<string>();
    for (const raw of readFileSync(file, 'utf8').split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      if (line === '') continue;
      entries.add(line.startsWith('spiffe://') ? line : line.replace(/:/g, '').toLowerCase());
    }
    return { mtimeMs, entries };
  }
}
