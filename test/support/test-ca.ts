// A throwaway CA for signature and mTLS tests: a self-signed P-256 root and leaf SVIDs whose URI SAN is
// spiffe://<trust-domain>/node/<node_type>/<node_id> and whose subject O is the namespace; a
// self-signed server certificate for 127.0.0.1; and an HTTPS client that can present an SVID.
import { KeyObject, type webcrypto } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import {
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectAlternativeNameExtension,
  X509CertificateGenerator,
  type X509Certificate,
} from '../../src/security/x509.js';

type CryptoKey = webcrypto.CryptoKey;
const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const HOUR = 3_600_000;

export interface TestSvid {
  certificatePem: string;
  privateKey: CryptoKey;
  spiffeId: string;
  /** Lowercase hex. */
  serial: string;
}

export interface TestCa {
  certificate: X509Certificate;
  certificatePem: string;
  trustDomain: string;
  issue(identity: { nodeType: string; nodeId: string; namespace?: string; notBefore?: Date; notAfter?: Date }): Promise<TestSvid>;
}

export async function createTestCa(trustDomain = 'test.rollcall'): Promise<TestCa> {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const certificate = await X509CertificateGenerator.createSelfSigned({
    name: `CN=test CA ${trustDomain}`,
    keys,
    signingAlgorithm: ALGORITHM,
    notBefore: new Date(Date.now() - HOUR),
    notAfter: new Date(Date.now() + 24 * HOUR),
    extensions: [new BasicConstraintsExtension(true, undefined, true), new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true)],
  });
  return {
    certificate,
    certificatePem: certificate.toString('pem'),
    trustDomain,
    async issue({ nodeType, nodeId, namespace, notBefore, notAfter }) {
      const leafKeys = await crypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
      const spiffeId = `spiffe://${trustDomain}/node/${nodeType}/${nodeId}`;
      const leaf = await X509CertificateGenerator.create({
        subject: namespace === undefined ? `CN=${nodeId}` : `CN=${nodeId}, O=${namespace}`,
        issuer: certificate.subject,
        publicKey: leafKeys.publicKey,
        signingKey: keys.privateKey,
        signingAlgorithm: ALGORITHM,
        notBefore: notBefore ?? new Date(Date.now() - 60_000),
        notAfter: notAfter ?? new Date(Date.now() + HOUR),
        extensions: [
          new BasicConstraintsExtension(false, undefined, true),
          new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
          new SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }]),
        ],
      });
      return { certificatePem: leaf.toString('pem'), privateKey: leafKeys.privateKey, spiffeId, serial: leaf.serialNumber.toLowerCase() };
    },
  };
}

/** PEM PKCS#8 of a WebCrypto private key, as TLS clients and servers take it. */
export function privateKeyPem(key: CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }) as string;
}

export interface ServerTlsFiles {
  certFile: string;
  keyFile: string;
  /** The self-signed server certificate: what clients trust as their CA. */
  certificatePem: string;
}

/** A self-signed server certificate for 127.0.0.1, written into `dir` as tlsCertFile and tlsKeyFile. */
export async function writeServerTls(dir: string): Promise<ServerTlsFiles> {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const certificate = await X509CertificateGenerator.createSelfSigned({
    name: 'CN=127.0.0.1',
    keys,
    signingAlgorithm: ALGORITHM,
    notBefore: new Date(Date.now() - HOUR),
    notAfter: new Date(Date.now() + 24 * HOUR),
    extensions: [
      new BasicConstraintsExtension(false, undefined, true),
      new ExtendedKeyUsageExtension([ExtendedKeyUsage.serverAuth]),
      new SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }]),
    ],
  });
  const certFile = join(dir, 'server.pem');
  const keyFile = join(dir, 'server.key');
  const certificatePem = certificate.toString('pem');
  await writeFile(certFile, certificatePem);
  await writeFile(keyFile, privateKeyPem(keys.privateKey), { mode: 0o600 });
  return { certFile, keyFile, certificatePem };
}

export interface TlsClient {
  /** PEM the server certificate is checked against. */
  ca: string;
  /** The client certificate (an SVID) and its key, for mTLS; none: no client certificate. */
  cert?: string;
  key?: string;
}

export interface TlsResponse<T> {
  status: number;
  contentType: string;
  body: T;
}

/**
 * A request over HTTPS on a connection of its own (no pooling: each request shows its own client
 * certificate, or none); the body is sent as JSON.
 */
export function tlsText(url: string, client: TlsClient, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<TlsResponse<string>> {
  const payload = init.body === undefined ? undefined : JSON.stringify(init.body);
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      url,
      {
        method: init.method ?? (payload === undefined ? 'GET' : 'POST'),
        headers: { ...(payload === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
        ca: client.ca,
        ...(client.cert !== undefined ? { cert: client.cert } : {}),
        ...(client.key !== undefined ? { key: client.key } : {}),
        agent: false,
        timeout: 10_000,
      },
      (response: IncomingMessage) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, contentType: response.headers['content-type'] ?? '', body: text }));
      },
    );
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
    request.end(payload);
  });
}

/** `tlsText` with the answer parsed as JSON, as `json()` of server.ts does over plain HTTP. */
export async function tlsJson<T = Record<string, unknown>>(url: string, client: TlsClient, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<TlsResponse<T>> {
  const response = await tlsText(url, client, init);
  try {
    return { ...response, body: (response.body ? JSON.parse(response.body) : null) as T };
  } catch (error) {
    throw new Error(`${response.status} with a body that is not JSON: ${response.body.slice(0, 200)}`, { cause: error });
  }
}
