// The HTTP listener over TLS (tlsCertFile, tlsKeyFile): a self-signed certificate for 127.0.0.1 is
// trusted only when given as the CA, and plain HTTP to the port gets no answer.
import { strict as assert } from 'node:assert';
import { KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/config.js';
import { RollcallError } from '../../src/domain/errors.js';
import { BasicConstraintsExtension, ExtendedKeyUsage, ExtendedKeyUsageExtension, SubjectAlternativeNameExtension, X509CertificateGenerator } from '../../src/security/x509.js';
import { startTestServer, type TestServer } from '../support/server.js';

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const HOUR = 3_600_000;

let dir: string;
let certificatePem: string;
let t: TestServer;

before(async () => {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const certificate = await X509CertificateGenerator.createSelfSigned({
    name: 'CN=127.0.0.1',
    keys,
    signingAlgorithm: ALGORITHM,
    notBefore: new Date(Date.now() - HOUR),
    notAfter: new Date(Date.now() + HOUR),
    extensions: [
      new BasicConstraintsExtension(false, undefined, true),
      new ExtendedKeyUsageExtension([ExtendedKeyUsage.serverAuth]),
      new SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }]),
    ],
  });
  certificatePem = certificate.toString('pem');
  dir = await mkdtemp(join(tmpdir(), 'rollcall-tls-'));
  const tlsCertFile = join(dir, 'server.pem');
  const tlsKeyFile = join(dir, 'server.key');
  await writeFile(tlsCertFile, certificatePem);
  await writeFile(tlsKeyFile, KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  t = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://', tlsCertFile, tlsKeyFile } });
});
after(async () => {
  await t?.close();
  await rm(dir, { recursive: true, force: true });
});

/** GET over https, or over plain http when the URL says http:. */
function get(url: string, options: RequestOptions = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const onResponse = (response: IncomingMessage): void => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    };
    const request = url.startsWith('https:') ? httpsRequest(url, { ...options, timeout: 5000 }, onResponse) : httpRequest(url, { timeout: 5000 }, onResponse);
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
    request.end();
  });
}

describe('TLS listener', () => {
  it('serves https at its public URL', () => {
    assert.match(t.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it('answers /health to a client trusting the certificate', async () => {
    const response = await get(`${t.url}/health`, { ca: certificatePem });
    assert.equal(response.status, 200, response.body);
  });

  it('fails certificate verification for a client that does not trust it', async () => {
    await assert.rejects(get(`${t.url}/health`), (error: NodeJS.ErrnoException) => {
      assert.equal(error.code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
      return true;
    });
  });

  it('gives plain http no answer', async () => {
    await assert.rejects(get(`${t.url.replace(/^https:/, 'http:')}/health`), (error: NodeJS.ErrnoException) => {
      assert.equal(error.code, 'ECONNRESET');
      return true;
    });
  });

  it('needs both files', () => {
    assert.throws(
      () => loadConfig({ env: { ROLLCALL_TLS_CERT_FILE: join(dir, 'server.pem') } }),
      (error: unknown) => error instanceof RollcallError && error.code === 'CONFIG_INVALID' && error.details?.field === 'tlsKeyFile',
    );
  });
});
