// Test helpers for the CA: node key pairs and CSRs, made with @peculiar/x509 and WebCrypto.
import { PemConverter, Pkcs10CertificateRequest, Pkcs10CertificateRequestGenerator, SubjectAlternativeNameExtension } from '../../src/security/x509.js';
import { KEY_ALGORITHM, SIGNING_ALGORITHM, type CryptoKey } from '../../src/security/ca.js';

export interface CryptoKeyPair {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

const webcrypto = globalThis.crypto;

export async function nodeKeys(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
}

/** A PEM CSR signed by `keys`, asking for `spiffeId` in its SAN when given. */
export async function makeCsr(keys?: CryptoKeyPair, spiffeId?: string): Promise<{ pem: string; keys: CryptoKeyPair; csr: Pkcs10CertificateRequest }> {
  const pair = keys ?? (await nodeKeys());
  const csr = await Pkcs10CertificateRequestGenerator.create(
    {
      name: 'CN=node',
      keys: pair,
      signingAlgorithm: SIGNING_ALGORITHM,
      ...(spiffeId ? { extensions: [new SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }])] } : {}),
    },
    webcrypto,
  );
  return { pem: csr.toString('pem'), keys: pair, csr };
}

/** The CSR with the last byte of its signature flipped: it still parses, its signature fails. */
export function breakSignature(pem: string): string {
  const der = new Uint8Array(PemConverter.decodeFirst(pem));
  der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 0x01;
  return PemConverter.encode(der, 'CERTIFICATE REQUEST');
}
