// Asking the registry's CA for an SVID from the node's side: a fresh ECDSA P-256 key, a PKCS#10 CSR
// of it, and the identity API's two exchanges (a join token for the first SVID, the current SVID
// for the next one). The rotator, the CLI and tests share these rather than each building CSRs.
import { X509Certificate as NodeX509Certificate } from 'node:crypto';
import { KEY_ALGORITHM, SIGNING_ALGORITHM, type CryptoKey } from '../security/ca.js';
import type { SvidCredentials } from '../security/signing.js';
import { Pkcs10CertificateRequestGenerator } from '../security/x509.js';
import type { RollcallClient, SvidDocument } from '../client/rollcall-client.js';

export interface SvidKeyPair {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

/** An SVID the node holds: what signs its envelopes, and when it must be renewed by. */
export interface NodeSvid {
  credentials: SvidCredentials & { spiffeId: string };
  /** Lowercase hexadecimal. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * A new ECDSA P-256 key pair. The private key is not extractable by default: it signs envelopes and
 * CSRs and never leaves the process.
 */
export function newSvidKey(options: { extractable?: boolean } = {}): Promise<SvidKeyPair> {
  return globalThis.crypto.subtle.generateKey(KEY_ALGORITHM, options.extractable ?? false, ['sign', 'verify']);
}

/** A PEM CSR of `keys` (self-signed with it), its DER bytes, and no SAN: the CA names the SPIFFE ID. */
export async function createCsr(keys: SvidKeyPair, commonName = 'rollcall node'): Promise<{ pem: string; der: ArrayBuffer }> {
  // A CN of letters, digits and the SPIFFE segment characters cannot break the distinguished name.
  const cn = commonName.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64) || 'node';
  const csr = await Pkcs10CertificateRequestGenerator.create({ name: `CN=${cn}`, keys, signingAlgorithm: SIGNING_ALGORITHM }, globalThis.crypto);
  return { pem: csr.toString('pem'), der: csr.rawData };
}

/** Reads serial, validity and SPIFFE ID of a PEM SVID (with Node's X.509 parser). */
export function describeSvid(credentials: SvidCredentials): NodeSvid {
  const certificate = new NodeX509Certificate(credentials.certificatePem);
  const spiffeIds = (certificate.subjectAltName ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('URI:spiffe://'))
    .map((entry) => entry.slice('URI:'.length));
  const spiffeId = credentials.spiffeId ?? spiffeIds[0];
  if (spiffeId === undefined || (credentials.spiffeId === undefined && spiffeIds.length !== 1)) {
    throw new RangeError(`the certificate must carry exactly one spiffe:// URI SAN, found ${spiffeIds.length}`);
  }
  return {
    credentials: { ...credentials, spiffeId },
    serial: certificate.serialNumber.toLowerCase(),
    notBefore: new Date(certificate.validFrom),
    notAfter: new Date(certificate.validTo),
  };
}

function fromDocument(document: SvidDocument, privateKey: CryptoKey): NodeSvid {
  return {
    credentials: { certificatePem: document.certificate, privateKey, spiffeId: document.spiffe_id },
    serial: document.serial.toLowerCase(),
    notBefore: new Date(document.not_before),
    notAfter: new Date(document.not_after),
  };
}

/**
 * Enrols: a new key, a CSR of it, and the join token exchanged for the first SVID
 * (POST /api/v1/identity/svid). Fails with the API's code (JOIN_TOKEN_INVALID, JOIN_TOKEN_FORBIDDEN,
 * CA_NOT_CONFIGURED, …); the token is consumed only when the exchange succeeds.
 */
export async function enrollSvid(client: RollcallClient, request: { joinToken: string; nodeId: string; nodeType?: string }): Promise<NodeSvid> {
  const keys = await newSvidKey();
  const csr = await createCsr(keys, request.nodeId);
  const document = await client.issueSvid({ token: request.joinToken, csr: csr.pem, node_id: request.nodeId, ...(request.nodeType === undefined ? {} : { node_type: request.nodeType }) });
  return fromDocument(document, keys.privateKey);
}

/**
 * Renews the SVID (POST /api/v1/identity/svid/renew) with a new key by default: the CSR of the new
 * key comes with its DER signed by the current key as proof of possession. With `rotateKey: false`
 * the CSR is of the current key, whose self-signature is the proof. Fails with the API's code
 * (SVID_REVOKED, SVID_EXPIRED, SVID_INVALID, …).
 */
export async function renewSvid(client: RollcallClient, current: SvidCredentials, options: { rotateKey?: boolean; commonName?: string } = {}): Promise<NodeSvid> {
  const rotateKey = options.rotateKey ?? true;
  let keys: SvidKeyPair;
  if (rotateKey) {
    keys = await newSvidKey();
  } else {
    const spki = new NodeX509Certificate(current.certificatePem).publicKey.export({ type: 'spki', format: 'der' });
    keys = { privateKey: current.privateKey, publicKey: await globalThis.crypto.subtle.importKey('spki', spki, KEY_ALGORITHM, true, ['verify']) };
  }
  const csr = await createCsr(keys, options.commonName);
  const proof = rotateKey ? Buffer.from(await globalThis.crypto.subtle.sign(SIGNING_ALGORITHM, current.privateKey, csr.der)).toString('base64') : undefined;
  const document = await client.renewSvid({ certificate: current.certificatePem, csr: csr.pem, ...(proof === undefined ? {} : { proof }) });
  return fromDocument(document, keys.privateKey);
}
