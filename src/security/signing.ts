// Envelope signatures: what bytes are signed, how an agent signs them with its SVID key, and how
// the registry checks a signature against a public key. Certificates and trust are the verifier's.
//
// The signed bytes are the UTF-8 canonical JSON (sorted keys) of the whole envelope with its
// `security` block present but without `security.signature`. The issue's wording ("the envelope
// without its signature") is followed rather than dropping the whole block: `signed_at`,
// `spiffe_id` and `svid_certificate` are then covered too, so a replayed event cannot be
// freshened by rewriting `signed_at` once the replay window has let go of its event id.
//
// Algorithm: "ES256" (the JOSE name): ECDSA on P-256 with SHA-256, the signature being the raw
// r||s pair (IEEE P1363, 64 bytes), which is what WebCrypto produces and expects. The seeds'
// Java-style "SHA256withECDSA" usually means a DER-encoded signature; it is not accepted, so the
// name on the wire always says exactly how to read the bytes.
import { X509Certificate, type webcrypto } from 'node:crypto';
import { canonicalJson, isJsonObject } from '../domain/json.js';
import type { Envelope } from '../domain/schemas.js';

/** WebCrypto's key type (the DOM lib is not loaded). */
export type CryptoKey = webcrypto.CryptoKey;

export const SIGNATURE_ALGORITHM = 'ES256';
const ECDSA_P256_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** The envelope's `security` block as the seeds show it. */
export interface SecurityBlock {
  spiffe_id: string;
  /** The signer's X.509-SVID, PEM. */
  svid_certificate: string;
  /** Base64 of the ES256 signature (r||s). */
  signature: string;
  signature_algorithm: typeof SIGNATURE_ALGORITHM;
  /** ISO 8601 time of signing; checked against the registry's clock window. */
  signed_at: string;
}

/** An agent's SVID: its certificate and the matching ECDSA P-256 private key (usage `sign`). */
export interface SvidCredentials {
  certificatePem: string;
  privateKey: CryptoKey;
  /** The SPIFFE ID of the certificate's URI SAN; read from the certificate when absent. */
  spiffeId?: string;
}

/** Returns the envelope signed; the agent calls it for every event it publishes. */
export type EnvelopeSigner = (event: Envelope) => Promise<Envelope>;

const encoder = new TextEncoder();

/** The bytes a signature covers: canonical JSON of the envelope, `security.signature` left out. */
export function signedBytes(event: Envelope): Uint8Array {
  const { security, ...rest } = event;
  const unsigned: Record<string, unknown> = { ...rest };
  if (security !== undefined) {
    const covered: Record<string, unknown> = { ...security };
    delete covered.signature;
    unsigned.security = covered;
  }
  return encoder.encode(canonicalJson(unsigned));
}

/** The SPIFFE ID in a PEM certificate's URI SAN, read with Node's X.509 parser (OpenSSL). */
export function spiffeIdOfPem(certificatePem: string): string {
  const uris = uriSans(new X509Certificate(certificatePem).subjectAltName);
  const spiffe = uris.filter((uri) => uri.startsWith('spiffe://'));
  if (spiffe.length !== 1) throw new Error(`the certificate must carry exactly one spiffe:// URI SAN, found ${spiffe.length}`);
  return spiffe[0] as string;
}

/** URI entries of Node's `subjectAltName` string ("DNS:a, URI:spiffe://td/x"). Quoted (escaped) values are skipped. */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined) return [];
  return subjectAltName
    .split(', ')
    .filter((entry) => entry.startsWith('URI:') && !entry.startsWith('URI:"'))
    .map((entry) => entry.slice('URI:'.length));
}

/** Signs `event` with the SVID: returns a copy whose `security` block carries certificate and signature. */
export async function signEnvelope(event: Envelope, credentials: SvidCredentials, now: Date = new Date()): Promise<Envelope> {
  const spiffeId = credentials.spiffeId ?? spiffeIdOfPem(credentials.certificatePem);
  const security = {
    spiffe_id: spiffeId,
    svid_certificate: credentials.certificatePem,
    signature_algorithm: SIGNATURE_ALGORITHM,
    signed_at: now.toISOString(),
  };
  const unsigned: Envelope = { ...event, security };
  const signature = await crypto.subtle.sign(ECDSA_P256_SHA256, credentials.privateKey, signedBytes(unsigned));
  return { ...unsigned, security: { ...security, signature: Buffer.from(signature).toString('base64') } };
}

/**
 * A signer for the agent: fixed credentials, or a function returning the current ones (so an
 * SDK rotating its SVID hands out the new certificate and key without rebuilding the agent).
 */
export function envelopeSigner(credentials: SvidCredentials | (() => SvidCredentials | Promise<SvidCredentials>)): EnvelopeSigner {
  if (typeof credentials === 'function') return async (event) => signEnvelope(event, await credentials());
  // Read the SPIFFE ID once rather than parsing the certificate for every event.
  let spiffeId = credentials.spiffeId;
  return async (event) => {
    spiffeId ??= spiffeIdOfPem(credentials.certificatePem);
    return signEnvelope(event, { ...credentials, spiffeId });
  };
}

/** Reads an envelope's `security` block; null when the envelope carries none. */
export function securityOf(event: Envelope): Partial<Record<keyof SecurityBlock, unknown>> | null {
  return isJsonObject(event.security) ? event.security : null;
}

/** Whether `signature` (base64, r||s) is a valid ES256 signature of the envelope under `publicKey`. */
export async function verifyEnvelopeSignature(event: Envelope, signature: string, publicKey: CryptoKey): Promise<boolean> {
  const bytes = Buffer.from(signature, 'base64');
  // Base64 decoding skips junk silently; a P-256 r||s signature is exactly 64 bytes.
  if (bytes.length !== 64) return false;
  return crypto.subtle.verify(ECDSA_P256_SHA256, publicKey, bytes, signedBytes(event));
}
