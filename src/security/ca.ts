// The built-in certificate authority: a self-signed ECDSA P-256 root per SPIFFE trust domain that issues
// short-lived X.509 SVIDs from CSRs, and the verification of an SVID against a trust bundle.
import { randomBytes, type webcrypto as nodeWebcrypto } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  Pkcs10CertificateRequest,
  PemConverter,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509Certificate,
  X509CertificateGenerator,
} from './x509.js';
import { RollcallError } from '../domain/errors.js';

const webcrypto = globalThis.crypto;
/** WebCrypto's key type (the DOM lib is not loaded). */
export type CryptoKey = nodeWebcrypto.CryptoKey;
/** Every key rollcall makes or accepts: ECDSA on P-256 with SHA-256. */
export const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;
const CA_LIFETIME_MS = 10 * 365.25 * 24 * 3600 * 1000;
export const CA_CERT_FILE = 'ca.pem';
export const CA_KEY_FILE = 'ca.key';

/** A trust domain: lower-case letters, digits, dots, dashes and underscores (SPIFFE ID spec). */
export const TRUST_DOMAIN_PATTERN = /^[a-z0-9._-]{1,255}$/;
/** A SPIFFE path segment: no percent-encoding, no `.` or `..`. */
const SEGMENT_PATTERN = /^[A-Za-z0-9._-]+$/;

export interface SpiffeNodeId {
  spiffeId: string;
  trustDomain: string;
  nodeType: string;
  nodeId: string;
}

export function isSpiffeSegment(value: string): boolean {
  return SEGMENT_PATTERN.test(value) && value !== '.' && value !== '..';
}

/** `spiffe://<trust-domain>/node/<node_type>/<node_id>`; refuses parts a SPIFFE ID cannot carry. */
export function nodeSpiffeId(trustDomain: string, nodeType: string, nodeId: string): string {
  if (!TRUST_DOMAIN_PATTERN.test(trustDomain)) throw new RollcallError('VALIDATION_FAILED', `Trust domain "${trustDomain}" is not valid: lower-case letters, digits, ".", "-" and "_".`);
  for (const [field, value] of [
    ['node_type', nodeType],
    ['node_id', nodeId],
  ] as const) {
    if (!isSpiffeSegment(value)) {
      throw new RollcallError('VALIDATION_FAILED', `${field} "${value}" cannot be a SPIFFE ID path segment: letters, digits, ".", "-" and "_" only.`, { details: { field } });
    }
  }
  return `spiffe://${trustDomain}/node/${nodeType}/${nodeId}`;
}

/** Parses a node SPIFFE ID; null when it is not of the form `spiffe://<td>/node/<type>/<id>`. */
export function parseSpiffeId(uri: string): SpiffeNodeId | null {
  const match = /^spiffe:\/\/([^/]+)\/node\/([^/]+)\/([^/]+)$/.exec(uri);
  if (!match) return null;
  const [, trustDomain = '', nodeType = '', nodeId = ''] = match;
  if (!TRUST_DOMAIN_PATTERN.test(trustDomain) || !isSpiffeSegment(nodeType) || !isSpiffeSegment(nodeId)) return null;
  return { spiffeId: uri, trustDomain, nodeType, nodeId };
}

function randomSerial(): string {
  const bytes = randomBytes(16);
  // Positive and without a leading zero byte, so the hex form survives DER encoding unchanged.
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40;
  return bytes.toString('hex');
}

function uriSans(certificate: X509Certificate | Pkcs10CertificateRequest): string[] {
  const extension =
    certificate instanceof X509Certificate
      ? certificate.getExtension(SubjectAlternativeNameExtension)
      : certificate.extensions.find((item): item is SubjectAlternativeNameExtension => item instanceof SubjectAlternativeNameExtension);
  return (extension?.names.items ?? []).filter((name) => name.type === 'url').map((name) => name.value);
}

function parseCertificate(pem: string, code: 'SVID_INVALID' | 'CONFIG_INVALID', what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (cause) {
    throw new RollcallError(code, `${what} is not a PEM X.509 certificate.`, { cause, details: { reason: 'malformed' } });
  }
}

/** Parses a PEM bundle of one or more certificates. */
export function parseBundle(bundle: string | readonly X509Certificate[]): X509Certificate[] {
  if (typeof bundle !== 'string') return [...bundle];
  try {
    return PemConverter.decode(bundle).map((der) => new X509Certificate(der));
  } catch (cause) {
    throw new RollcallError('CONFIG_INVALID', 'The trust bundle is not a list of PEM certificates.', { cause });
  }
}

function trustDomainOfCa(certificate: X509Certificate): string | null {
  const uri = uriSans(certificate).find((value) => value.startsWith('spiffe://'));
  const trustDomain = uri?.slice('spiffe://'.length).replace(/\/$/, '');
  return trustDomain !== undefined && TRUST_DOMAIN_PATTERN.test(trustDomain) ? trustDomain : null;
}

/** A certificate request whose self-signature holds, with an ECDSA P-256 key. */
export async function parseCsr(pem: string): Promise<Pkcs10CertificateRequest> {
  let csr: Pkcs10CertificateRequest;
  try {
    csr = new Pkcs10CertificateRequest(pem);
  } catch (cause) {
    throw new RollcallError('CSR_INVALID', 'The CSR is not a PEM PKCS#10 certificate request.', { cause, details: { reason: 'malformed' } });
  }
  const algorithm = csr.publicKey.algorithm as nodeWebcrypto.EcKeyAlgorithm;
  if (algorithm.name !== 'ECDSA' || algorithm.namedCurve !== 'P-256') {
    throw new RollcallError('CSR_INVALID', 'The CSR key must be ECDSA P-256.', { details: { reason: 'key_algorithm' } });
  }
  let valid = false;
  try {
    valid = await csr.verify(webcrypto);
  } catch (cause) {
    throw new RollcallError('CSR_INVALID', 'The CSR signature cannot be checked.', { cause, details: { reason: 'signature' } });
  }
  if (!valid) throw new RollcallError('CSR_INVALID', 'The CSR self-signature does not verify.', { details: { reason: 'signature' } });
  return csr;
}

/** The SPIFFE ID a CSR asks for in its SAN extension request, when it names one. */
export function requestedSpiffeId(csr: Pkcs10CertificateRequest): string | null {
  const uris = uriSans(csr).filter((uri) => uri.startsWith('spiffe://'));
  if (uris.length > 1) throw new RollcallError('CSR_INVALID', 'The CSR asks for more than one SPIFFE ID.', { details: { reason: 'san' } });
  return uris[0] ?? null;
}

export interface IssueOptions {
  /** Namespace written into the subject (O=<namespace>), for verifiers that scope by namespace. */
  namespace?: string;
  /** Start of validity; defaults to now. Tests use a past one to make expired certificates. */
  now?: Date;
}

export interface IssuedSvid {
  /** PEM of the SVID. */
  certificate: string;
  serial: string;
  spiffeId: string;
  notBefore: Date;
  notAfter: Date;
}

export interface VerifiedSvid {
  spiffeId: string;
  trustDomain: string;
  nodeType: string;
  nodeId: string;
  /** O= of the subject: the namespace the join token was for (null when absent). */
  namespace: string | null;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  certificate: X509Certificate;
  /** The SVID's public key, ready for `crypto.subtle.verify(SIGNING_ALGORITHM, …)`. */
  publicKey: CryptoKey;
}

/** Answers whether a certificate was revoked (by serial, or by SPIFFE ID after it was issued). */
export interface RevocationChecker {
  isRevoked(serial: string, spiffeId: string, notBeforeMs: number): boolean | Promise<boolean>;
}

/**
 * Verifies that `certificatePem` is a leaf SVID issued directly by a root of `bundle`, valid at `now`,
 * carrying exactly one node SPIFFE ID of that root's trust domain, and (when `revocations` is given)
 * not revoked. Throws RollcallError SVID_INVALID, SVID_EXPIRED or SVID_REVOKED.
 */
export async function verifySvidChain(certificatePem: string, bundle: string | readonly X509Certificate[], now: Date = new Date(), revocations?: RevocationChecker): Promise<VerifiedSvid> {
  const certificate = parseCertificate(certificatePem, 'SVID_INVALID', 'The SVID');
  const roots = parseBundle(bundle);
  let issuer: X509Certificate | null = null;
  for (const root of roots) {
    if (root.subject !== certificate.issuer) continue;
    const signed = await certificate.verify({ publicKey: root, signatureOnly: true }, webcrypto).catch(() => false);
    if (signed) {
      issuer = root;
      break;
    }
  }
  if (!issuer) throw new RollcallError('SVID_INVALID', 'The SVID does not chain to the trust bundle.', { details: { reason: 'untrusted_issuer' } });
  if (!issuer.getExtension(BasicConstraintsExtension)?.ca) throw new RollcallError('SVID_INVALID', 'The issuer is not a CA.', { details: { reason: 'untrusted_issuer' } });
  if (now < issuer.notBefore || now > issuer.notAfter) throw new RollcallError('SVID_EXPIRED', 'The CA certificate is outside its validity window.', { details: { reason: 'ca_expired' } });
  if (certificate.getExtension(BasicConstraintsExtension)?.ca) throw new RollcallError('SVID_INVALID', 'A CA certificate is not an SVID.', { details: { reason: 'not_leaf' } });
  const serial = certificate.serialNumber;
  if (now < certificate.notBefore) throw new RollcallError('SVID_INVALID', 'The SVID is not valid yet.', { details: { reason: 'not_yet_valid', serial } });
  if (now > certificate.notAfter) {
    throw new RollcallError('SVID_EXPIRED', `The SVID expired at ${certificate.notAfter.toISOString()}.`, { details: { reason: 'expired', serial, not_after: certificate.notAfter.toISOString() } });
  }
  const uris = uriSans(certificate);
  const parsed = uris.length === 1 && uris[0] !== undefined ? parseSpiffeId(uris[0]) : null;
  if (!parsed) throw new RollcallError('SVID_INVALID', 'The SVID must carry exactly one URI SAN, spiffe://<trust-domain>/node/<node_type>/<node_id>.', { details: { reason: 'spiffe_id', serial } });
  const rootDomain = trustDomainOfCa(issuer);
  if (rootDomain !== null && rootDomain !== parsed.trustDomain) {
    throw new RollcallError('SVID_INVALID', `The SVID's trust domain ${parsed.trustDomain} is not its CA's (${rootDomain}).`, { details: { reason: 'trust_domain', serial } });
  }
  if (revocations && (await revocations.isRevoked(serial, parsed.spiffeId, certificate.notBefore.getTime()))) {
    throw new RollcallError('SVID_REVOKED', `The SVID ${serial} (${parsed.spiffeId}) is revoked.`, { details: { reason: 'revoked', serial, spiffe_id: parsed.spiffeId } });
  }
  const publicKey = await verificationKey(certificate);
  return {
    ...parsed,
    namespace: certificate.subjectName.getField('O')[0] ?? null,
    serial,
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
    certificate,
    publicKey,
  };
}

/** The certificate's public key as a WebCrypto verification key. */
export function verificationKey(certificate: X509Certificate): Promise<CryptoKey> {
  return webcrypto.subtle.importKey('spki', certificate.publicKey.rawData, KEY_ALGORITHM, true, ['verify']);
}

/** A root CA: its certificate, its private key and the trust domain it speaks for. */
export class CertificateAuthority {
  private constructor(
    readonly certificate: X509Certificate,
    private readonly privateKey: CryptoKey,
    readonly trustDomain: string,
  ) {}

  /** Creates a new root: self-signed, CA:true, keyCertSign + cRLSign, 10 years, URI SAN spiffe://<td>. */
  static async create(trustDomain: string, now: Date = new Date()): Promise<{ ca: CertificateAuthority; keyPem: string }> {
    if (!TRUST_DOMAIN_PATTERN.test(trustDomain)) throw new RollcallError('VALIDATION_FAILED', `Trust domain "${trustDomain}" is not valid: lower-case letters, digits, ".", "-" and "_".`);
    const keys = await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
    const certificate = await X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: randomSerial(),
        name: `CN=rollcall root CA ${trustDomain}, O=rollcall`,
        notBefore: now,
        notAfter: new Date(now.getTime() + CA_LIFETIME_MS),
        signingAlgorithm: SIGNING_ALGORITHM,
        keys,
        extensions: [
          new BasicConstraintsExtension(true, undefined, true),
          new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
          await SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
          new SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
        ],
      },
      webcrypto,
    );
    const keyPem = PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
    // Keep the in-memory key unextractable, as a loaded one is.
    const privateKey = await importPrivateKey(keyPem);
    return { ca: new CertificateAuthority(certificate, privateKey, trustDomain), keyPem };
  }

  /** Loads a root from PEM; checks that the key is the certificate's and the trust domain. */
  static async load(certificatePem: string, keyPem: string, expectedTrustDomain?: string): Promise<CertificateAuthority> {
    const certificate = parseCertificate(certificatePem, 'CONFIG_INVALID', 'The CA certificate');
    if (!certificate.getExtension(BasicConstraintsExtension)?.ca) throw new RollcallError('CONFIG_INVALID', 'The CA certificate is not a CA (basicConstraints CA:false).');
    const privateKey = await importPrivateKey(keyPem);
    const probe = new TextEncoder().encode('rollcall-ca-key-check');
    const signature = await webcrypto.subtle.sign(SIGNING_ALGORITHM, privateKey, probe);
    const publicKey = await verificationKey(certificate);
    if (!(await webcrypto.subtle.verify(SIGNING_ALGORITHM, publicKey, signature, probe))) {
      throw new RollcallError('CONFIG_INVALID', 'The CA key does not belong to the CA certificate.', { details: { field: 'caKeyFile' } });
    }
    const trustDomain = expectedTrustDomain ?? trustDomainOfCa(certificate);
    if (trustDomain === null) throw new RollcallError('CONFIG_INVALID', 'The CA certificate names no trust domain (URI SAN spiffe://<td>); set trustDomain.', { details: { field: 'trustDomain' } });
    const named = trustDomainOfCa(certificate);
    if (named !== null && named !== trustDomain) {
      throw new RollcallError('CONFIG_INVALID', `Option "trustDomain" is ${trustDomain} but the CA certificate is for ${named}.`, { details: { field: 'trustDomain' } });
    }
    return new CertificateAuthority(certificate, privateKey, trustDomain);
  }

  /** The trust bundle: the root certificate as PEM. */
  get bundlePem(): string {
    return `${this.certificate.toString('pem')}\n`;
  }

  /**
   * Issues an SVID for the CSR's key (the CSR's self-signature must hold): URI SAN `spiffeId`,
   * digitalSignature, clientAuth + serverAuth, valid `ttlSeconds` from `options.now`.
   */
  async issue(csrPem: string | Pkcs10CertificateRequest, spiffeId: string, ttlSeconds: number, options: IssueOptions = {}): Promise<IssuedSvid> {
    const csr = typeof csrPem === 'string' ? await parseCsr(csrPem) : csrPem;
    const parsed = parseSpiffeId(spiffeId);
    if (!parsed || parsed.trustDomain !== this.trustDomain) {
      throw new RollcallError('VALIDATION_FAILED', `${spiffeId} is not a node SPIFFE ID of trust domain ${this.trustDomain}.`);
    }
    const notBefore = new Date(options.now ?? Date.now());
    // X.509 times have second precision: round down so the recorded window is the certificate's.
    notBefore.setUTCMilliseconds(0);
    const notAfter = new Date(notBefore.getTime() + ttlSeconds * 1000);
    const certificate = await X509CertificateGenerator.create(
      {
        serialNumber: randomSerial(),
        subject: options.namespace ? [{ O: [options.namespace] }] : [],
        issuer: this.certificate.subjectName,
        notBefore,
        notAfter,
        publicKey: csr.publicKey,
        signingKey: this.privateKey,
        signingAlgorithm: SIGNING_ALGORITHM,
        extensions: [
          new BasicConstraintsExtension(false, undefined, true),
          new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
          new ExtendedKeyUsageExtension([ExtendedKeyUsage.serverAuth, ExtendedKeyUsage.clientAuth]),
          // An SVID with an empty subject must mark its SAN critical (SPIFFE X.509-SVID spec).
          new SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], !options.namespace),
          await SubjectKeyIdentifierExtension.create(csr.publicKey, false, webcrypto),
          await AuthorityKeyIdentifierExtension.create(this.certificate, false, webcrypto),
        ],
      },
      webcrypto,
    );
    return { certificate: certificate.toString('pem'), serial: certificate.serialNumber, spiffeId, notBefore: certificate.notBefore, notAfter: certificate.notAfter };
  }

  /** Verifies an SVID against this CA alone (see verifySvidChain). */
  verify(certificatePem: string, now: Date = new Date(), revocations?: RevocationChecker): Promise<VerifiedSvid> {
    return verifySvidChain(certificatePem, [this.certificate], now, revocations);
  }
}

async function importPrivateKey(keyPem: string): Promise<CryptoKey> {
  try {
    return await webcrypto.subtle.importKey('pkcs8', PemConverter.decodeFirst(keyPem), KEY_ALGORITHM, false, ['sign']);
  } catch (cause) {
    throw new RollcallError('CONFIG_INVALID', 'The CA key is not a PEM PKCS#8 ECDSA P-256 private key.', { cause, details: { field: 'caKeyFile' } });
  }
}

/**
 * `rollcall ca init`: writes a new root into `dir` (ca.pem 0600, ca.key 0600, the folder 0700 when
 * created); refuses when either file exists.
 */
export async function initCaFiles(dir: string, trustDomain: string, now: Date = new Date()): Promise<{ certFile: string; keyFile: string; ca: CertificateAuthority }> {
  const created = await mkdir(dir, { recursive: true, mode: 0o700 });
  if (created !== undefined) await chmod(dir, 0o700);
  const certFile = join(dir, CA_CERT_FILE);
  const keyFile = join(dir, CA_KEY_FILE);
  for (const file of [certFile, keyFile]) {
    if (
      await stat(file).then(
        () => true,
        () => false,
      )
    ) {
      throw new RollcallError('CA_EXISTS', `${file} exists: a CA is already initialised there; remove it yourself to start over.`, { details: { file } });
    }
  }
  const { ca, keyPem } = await CertificateAuthority.create(trustDomain, now);
  // 'wx' fails if the file appeared meanwhile: never overwrite a key.
  try {
    await writeFile(keyFile, keyPem, { mode: 0o600, flag: 'wx' });
    await writeFile(certFile, ca.bundlePem, { mode: 0o600, flag: 'wx' });
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'EEXIST') throw new RollcallError('CA_EXISTS', `A CA appeared in ${dir} while initialising.`, { cause });
    throw cause;
  }
  return { certFile, keyFile, ca };
}

/** Loads the configured CA; the key file must not be readable by group or others. */
export async function loadCaFiles(certFile: string, keyFile: string, trustDomain?: string): Promise<CertificateAuthority> {
  const read = async (file: string, field: string): Promise<string> => {
    try {
      return await readFile(file, 'utf8');
    } catch (cause) {
      throw new RollcallError('CONFIG_INVALID', `Cannot read ${field} ${file}: ${(cause as Error).message}`, { cause, details: { field } });
    }
  };
  const keyPem = await read(keyFile, 'caKeyFile');
  if (process.platform !== 'win32' && ((await stat(keyFile)).mode & 0o077) !== 0) {
    throw new RollcallError('CONFIG_INVALID', `The CA key ${keyFile} is readable by group or others; chmod 600 it.`, { details: { field: 'caKeyFile' } });
  }
  return CertificateAuthority.load(await read(certFile, 'caCertFile'), keyPem, trustDomain);
}
