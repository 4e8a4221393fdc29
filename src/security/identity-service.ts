// Node identity over the store: join tokens, exchanging a token and a CSR for an SVID, renewal with the
// current SVID, revocation; the operations behind the identity API and CLI.
import type { Pkcs10CertificateRequest } from './x509.js';
import { RollcallError } from '../domain/errors.js';
import type { CertificateRevocation, IdentityStore } from '../store/store.js';
import {
  nodeSpiffeId,
  parseCsr,
  parseSpiffeId,
  requestedSpiffeId,
  SIGNING_ALGORITHM,
  verifySvidChain,
  type CertificateAuthority,
  type IssuedSvid,
  type RevocationChecker,
  type VerifiedSvid,
} from './ca.js';
import { createJoinToken, hashJoinToken, type CreatedJoinToken } from './join-tokens.js';

export type { CreatedJoinToken } from './join-tokens.js';

export interface IdentityServiceOptions {
  ca: CertificateAuthority;
  store: IdentityStore;
  svidTtlSeconds: number;
  /** Milliseconds since the epoch; tests pass a clock of their own. */
  now?: () => number;
}

export interface SvidResponse {
  spiffe_id: string;
  serial: string;
  certificate: string;
  not_before: string;
  not_after: string;
  /** The trust bundle, so the node can verify its peers. */
  bundle: string;
}

export class IdentityService implements RevocationChecker {
  readonly ca: CertificateAuthority;
  private readonly store: IdentityStore;
  private readonly svidTtlSeconds: number;
  private readonly now: () => number;

  constructor(options: IdentityServiceOptions) {
    this.ca = options.ca;
    this.store = options.store;
    this.svidTtlSeconds = options.svidTtlSeconds;
    this.now = options.now ?? Date.now;
  }

  get trustDomain(): string {
    return this.ca.trustDomain;
  }

  get bundlePem(): string {
    return this.ca.bundlePem;
  }

  createJoinToken(request: { namespace: string; nodeType: string; ttlSeconds?: number; uses?: number }): Promise<CreatedJoinToken> {
    return createJoinToken(this.store, request, this.now());
  }

  /**
   * Exchanges a join token and a CSR for an SVID. The node type comes from `nodeType` or from the
   * SPIFFE ID the CSR asks for (both, when given, must agree) and must be the token's. The CSR is
   * checked before the token is consumed, so a bad CSR does not burn the token.
   */
  async exchangeJoinToken(request: { token: string; csr: string; nodeId: string; nodeType?: string }): Promise<SvidResponse> {
    const csr = await parseCsr(request.csr);
    const asked = requestedSpiffeId(csr);
    let nodeType = request.nodeType;
    if (asked !== null) {
      const parsed = parseSpiffeId(asked);
      if (!parsed || parsed.trustDomain !== this.trustDomain || parsed.nodeId !== request.nodeId || (nodeType !== undefined && parsed.nodeType !== nodeType)) {
        throw new RollcallError('CSR_INVALID', `The CSR asks for ${asked}, which is not spiffe://${this.trustDomain}/node/${nodeType ?? '<node_type>'}/${request.nodeId}.`, {
          details: { reason: 'san' },
        });
      }
      nodeType = parsed.nodeType;
    }
    if (nodeType === undefined) throw new RollcallError('VALIDATION_FAILED', 'node_type is required when the CSR asks for no SPIFFE ID.', { details: { field: 'node_type' } });
    const spiffeId = nodeSpiffeId(this.trustDomain, nodeType, request.nodeId);
    const use = await this.store.consumeJoinToken(hashJoinToken(request.token), nodeType, this.now());
    switch (use.status) {
      case 'unknown':
        throw new RollcallError('JOIN_TOKEN_INVALID', 'The join token is not known.', { details: { reason: 'unknown' } });
      case 'expired':
        throw new RollcallError('JOIN_TOKEN_INVALID', 'The join token has expired.', { details: { reason: 'expired' } });
      case 'used_up':
        throw new RollcallError('JOIN_TOKEN_INVALID', 'The join token has already been used.', { details: { reason: 'used' } });
      case 'wrong_node_type':
        throw new RollcallError('JOIN_TOKEN_FORBIDDEN', `The join token does not allow node_type ${nodeType}.`, { details: { reason: 'node_type', node_type: nodeType } });
      case 'consumed':
        return this.issue(csr, spiffeId, use.token.namespace, `join_token:${use.token.id}`);
    }
  }

  /**
   * Renews an SVID. The caller presents its current, valid, unrevoked SVID and a fresh CSR. Same key:
   * the CSR's self-signature proves possession of the SVID's key. New key: `proof` must be the
   * base64 ECDSA P-256/SHA-256 signature (IEEE P1363, as WebCrypto makes it) of the CSR's DER bytes
   * by the current SVID's key. The new SVID keeps the SPIFFE ID and namespace.
   */
  async renew(request: { certificate: string; csr: string; proof?: string }): Promise<SvidResponse> {
    const current = await this.verify(request.certificate);
    const csr = await parseCsr(request.csr);
    const sameKey = Buffer.from(csr.publicKey.rawData).equals(Buffer.from(current.certificate.publicKey.rawData));
    if (!sameKey) {
      if (request.proof === undefined)
        throw new RollcallError('SVID_INVALID', 'The CSR has a new key: sign its DER with the current SVID key and send it as proof.', { details: { reason: 'proof_required' } });
      const signed = await globalThis.crypto.subtle.verify(SIGNING_ALGORITHM, current.publicKey, Buffer.from(request.proof, 'base64'), csr.rawData).catch(() => false);
      if (!signed) throw new RollcallError('SVID_INVALID', 'The proof is not a signature of the CSR by the current SVID key.', { details: { reason: 'proof' } });
    }
    const asked = requestedSpiffeId(csr);
    if (asked !== null && asked !== current.spiffeId) throw new RollcallError('CSR_INVALID', `A renewal keeps the SPIFFE ID ${current.spiffeId}.`, { details: { reason: 'san' } });
    return this.issue(csr, current.spiffeId, current.namespace ?? undefined, `renewal:${current.serial}`);
  }

  /** Verifies an SVID against this CA, its validity at now, and revocations. */
  verify(certificatePem: string, now: Date = new Date(this.now())): Promise<VerifiedSvid> {
    return verifySvidChain(certificatePem, [this.ca.certificate], now, this);
  }

  async revoke(request: { serial?: string; spiffeId?: string; reason?: string }): Promise<CertificateRevocation> {
    if (request.spiffeId !== undefined && parseSpiffeId(request.spiffeId)?.trustDomain !== this.trustDomain) {
      throw new RollcallError('REVOCATION_INVALID', `spiffe_id must be spiffe://${this.trustDomain}/node/<node_type>/<node_id>.`, { details: { field: 'spiffe_id' } });
    }
    return revokeCertificate(this.store, request, this.now());
  }

  listRevocations(): Promise<CertificateRevocation[]> {
    return this.store.listRevocations();
  }

  isRevoked(serial: string, spiffeId: string, notBeforeMs: number): Promise<boolean> {
    return this.store.isRevoked(serial.toLowerCase(), spiffeId, notBeforeMs);
  }

  private async issue(csr: Pkcs10CertificateRequest, spiffeId: string, namespace: string | undefined, issuedVia: string): Promise<SvidResponse> {
    const issued: IssuedSvid = await this.ca.issue(csr, spiffeId, this.svidTtlSeconds, { ...(namespace ? { namespace } : {}), now: new Date(this.now()) });
    const parsed = parseSpiffeId(spiffeId);
    await this.store.recordCertificate({
      serial: issued.serial,
      spiffe_id: spiffeId,
      namespace: namespace ?? '',
      node_type: parsed?.nodeType ?? '',
      node_id: parsed?.nodeId ?? '',
      not_before: issued.notBefore.toISOString(),
      not_after: issued.notAfter.toISOString(),
      issued_via: issuedVia,
    });
    return {
      spiffe_id: spiffeId,
      serial: issued.serial,
      certificate: issued.certificate,
      not_before: issued.notBefore.toISOString(),
      not_after: issued.notAfter.toISOString(),
      bundle: this.bundlePem,
    };
  }
}

/** Records a revocation by serial (hex, any case) or by node SPIFFE ID: the CLI's path and the API's. */
export async function revokeCertificate(
  store: Pick<IdentityStore, 'revokeCertificate'>,
  request: { serial?: string; spiffeId?: string; reason?: string },
  nowMs: number = Date.now(),
): Promise<CertificateRevocation> {
  const serial = request.serial?.toLowerCase();
  if ((serial === undefined) === (request.spiffeId === undefined)) throw new RollcallError('REVOCATION_INVALID', 'Name exactly one of serial and spiffe_id.');
  if (serial !== undefined && !/^[0-9a-f]{1,64}$/.test(serial)) throw new RollcallError('REVOCATION_INVALID', 'serial must be hexadecimal.', { details: { field: 'serial' } });
  if (request.spiffeId !== undefined && parseSpiffeId(request.spiffeId) === null) {
    throw new RollcallError('REVOCATION_INVALID', 'spiffe_id must be spiffe://<trust-domain>/node/<node_type>/<node_id>.', { details: { field: 'spiffe_id' } });
  }
  return store.revokeCertificate(
    { ...(serial !== undefined ? { serial } : {}), ...(request.spiffeId !== undefined ? { spiffe_id: request.spiffeId } : {}), reason: request.reason ?? 'unspecified' },
    nowMs,
  );
}
