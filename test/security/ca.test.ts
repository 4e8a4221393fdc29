// The CA's crypto without a store: issuing SVIDs from CSRs and verifying them against a trust bundle.
import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import { ExtendedKeyUsage, ExtendedKeyUsageExtension, KeyUsageFlags, KeyUsagesExtension, SubjectAlternativeNameExtension, X509Certificate } from '../../src/security/x509.js';
import { RollcallError } from '../../src/domain/errors.js';
import { CertificateAuthority, nodeSpiffeId, parseCsr, parseSpiffeId, verifySvidChain } from '../../src/security/ca.js';
import { breakSignature, makeCsr } from './ca-support.js';

const TD = 'rollcall.test';
let ca: CertificateAuthority;

before(async () => {
  // Backdated a day, so certificates issued in the past chain to a CA valid then.
  ({ ca } = await CertificateAuthority.create(TD, new Date(Date.now() - 86_400_000)));
});

async function rejects(promise: Promise<unknown>, code: string): Promise<RollcallError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof RollcallError, String(error));
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected ${code}`);
}

describe('certificate authority', () => {
  it('makes a self-signed P-256 root with CA:true and keyCertSign', async () => {
    const root = ca.certificate;
    assert.equal(root.subject, root.issuer);
    assert.ok(await root.verify({ signatureOnly: true }, globalThis.crypto));
    assert.equal((root.publicKey.algorithm as { namedCurve?: string }).namedCurve, 'P-256');
    const usages = root.getExtension(KeyUsagesExtension)?.usages ?? 0;
    assert.ok(usages & KeyUsageFlags.keyCertSign);
    const years = (root.notAfter.getTime() - root.notBefore.getTime()) / (365 * 24 * 3600 * 1000);
    assert.ok(years > 9.9 && years < 10.1, String(years));
    assert.match(ca.bundlePem, /^-----BEGIN CERTIFICATE-----/);
  });

  it('issues an SVID with the exact URI SAN, lifetime, usages and the CSR key', async () => {
    const { pem, csr } = await makeCsr();
    const spiffeId = nodeSpiffeId(TD, 'orchestrator', 'orch-1');
    const now = new Date('2030-01-01T00:00:00.000Z');
    const issued = await ca.issue(pem, spiffeId, 3600, { namespace: 'team-a', now });
    const cert = new X509Certificate(issued.certificate);
    const san = cert.getExtension(SubjectAlternativeNameExtension);
    assert.deepEqual(
      san?.names.items.map((name) => [name.type, name.value]),
      [['url', 'spiffe://rollcall.test/node/orchestrator/orch-1']],
    );
    assert.equal(cert.notBefore.toISOString(), now.toISOString());
    assert.equal(cert.notAfter.getTime() - cert.notBefore.getTime(), 3600 * 1000);
    assert.equal(cert.getExtension(KeyUsagesExtension)?.usages, KeyUsageFlags.digitalSignature);
    assert.deepEqual([...(cert.getExtension(ExtendedKeyUsageExtension)?.usages ?? [])].sort(), [ExtendedKeyUsage.serverAuth, ExtendedKeyUsage.clientAuth].sort());
    assert.deepEqual(Buffer.from(cert.publicKey.rawData), Buffer.from(csr.publicKey.rawData));
    assert.equal(cert.issuer, ca.certificate.subject);
    assert.equal(issued.serial, cert.serialNumber);

    const verified = await verifySvidChain(issued.certificate, ca.bundlePem, new Date(now.getTime() + 60_000));
    assert.equal(verified.spiffeId, spiffeId);
    assert.equal(verified.serial, issued.serial);
    assert.equal(verified.notAfter.toISOString(), new Date(now.getTime() + 3600_000).toISOString());
    assert.deepEqual([verified.trustDomain, verified.nodeType, verified.nodeId, verified.namespace], [TD, 'orchestrator', 'orch-1', 'team-a']);
  });

  it('refuses a CSR whose self-signature is broken', async () => {
    const { pem } = await makeCsr();
    const error = await rejects(parseCsr(breakSignature(pem)), 'CSR_INVALID');
    assert.equal(error.details?.reason, 'signature');
    await rejects(ca.issue(breakSignature(pem), nodeSpiffeId(TD, 'reducer', 'r-1'), 3600), 'CSR_INVALID');
    await rejects(parseCsr('not a csr'), 'CSR_INVALID');
  });

  it('refuses a certificate from a foreign CA', async () => {
    const { ca: foreign } = await CertificateAuthority.create(TD);
    const issued = await foreign.issue((await makeCsr()).pem, nodeSpiffeId(TD, 'reducer', 'r-1'), 3600);
    const error = await rejects(verifySvidChain(issued.certificate, ca.bundlePem, new Date()), 'SVID_INVALID');
    assert.equal(error.details?.reason, 'untrusted_issuer');
  });

  it('refuses an expired certificate and one not yet valid', async () => {
    const past = new Date(Date.now() - 2 * 3600_000);
    const issued = await ca.issue((await makeCsr()).pem, nodeSpiffeId(TD, 'reducer', 'r-2'), 3600, { now: past });
    await rejects(verifySvidChain(issued.certificate, ca.bundlePem, new Date()), 'SVID_EXPIRED');
    await verifySvidChain(issued.certificate, ca.bundlePem, new Date(past.getTime() + 1000));
    await rejects(verifySvidChain(issued.certificate, ca.bundlePem, new Date(past.getTime() - 1000)), 'SVID_INVALID');
  });

  it('refuses a revoked certificate, by serial or by SPIFFE ID', async () => {
    const issued = await ca.issue((await makeCsr()).pem, nodeSpiffeId(TD, 'reducer', 'r-3'), 3600);
    const bySerial = { isRevoked: (serial: string) => serial === issued.serial };
    await rejects(verifySvidChain(issued.certificate, ca.bundlePem, new Date(), bySerial), 'SVID_REVOKED');
    const byId = { isRevoked: (_serial: string, spiffeId: string) => spiffeId === issued.spiffeId };
    await rejects(ca.verify(issued.certificate, new Date(), byId), 'SVID_REVOKED');
    await ca.verify(issued.certificate, new Date(), { isRevoked: () => false });
  });

  it('refuses the CA certificate itself and garbage as an SVID', async () => {
    await rejects(verifySvidChain(ca.bundlePem, ca.bundlePem, new Date()), 'SVID_INVALID');
    await rejects(verifySvidChain('garbage', ca.bundlePem, new Date()), 'SVID_INVALID');
  });

  it('parses node SPIFFE IDs and refuses what a SPIFFE ID cannot carry', () => {
    assert.deepEqual(parseSpiffeId('spiffe://td/node/registry/r-1'), { spiffeId: 'spiffe://td/node/registry/r-1', trustDomain: 'td', nodeType: 'registry', nodeId: 'r-1' });
    for (const bad of ['spiffe://td/node/registry', 'spiffe://TD/node/a/b', 'https://td/node/a/b', 'spiffe://td/node/a/..', 'spiffe://td/node/a/b%20c', 'spiffe://td/node/a/b/c']) {
      assert.equal(parseSpiffeId(bad), null, bad);
    }
    assert.throws(
      () => nodeSpiffeId(TD, 'registry', 'host:9205'),
      (error: unknown) => error instanceof RollcallError && error.code === 'VALIDATION_FAILED',
    );
  });

  it('loads a CA from PEM and refuses a key of another CA', async () => {
    const { ca: created, keyPem } = await CertificateAuthority.create('other.test');
    const loaded = await CertificateAuthority.load(created.bundlePem, keyPem);
    assert.equal(loaded.trustDomain, 'other.test');
    const { keyPem: otherKey } = await CertificateAuthority.create('other.test');
    await rejects(CertificateAuthority.load(created.bundlePem, otherKey), 'CONFIG_INVALID');
    await rejects(CertificateAuthority.load(created.bundlePem, keyPem, 'another.test'), 'CONFIG_INVALID');
  });
});
