// The identity API on a real server with a CA: join token + CSR → SVID, refusals, renewal, revocation.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { initCaFiles, verifySvidChain, SIGNING_ALGORITHM } from '../../src/security/ca.js';
import { SubjectAlternativeNameExtension, X509Certificate } from '../../src/security/x509.js';
import { json, startTestServer, type TestServer } from '../support/server.js';
import { breakSignature, makeCsr } from './ca-support.js';
import { expectProblem } from '../support/problems.js';

const TD = 'identity.test';
let t: TestServer;
let caDir: string;

before(async () => {
  caDir = await mkdtemp(join(tmpdir(), 'rollcall-ca-'));
  const { certFile, keyFile } = await initCaFiles(join(caDir, 'ca'), TD);
  t = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://', caCertFile: certFile, caKeyFile: keyFile, svidTtlSeconds: 1800 } });
});
after(async () => {
  await t?.close();
  await rm(caDir, { recursive: true, force: true });
});

interface Svid {
  spiffe_id: string;
  serial: string;
  certificate: string;
  not_before: string;
  not_after: string;
  bundle: string;
}

async function token(nodeType: string, extra: Record<string, unknown> = {}): Promise<string> {
  const created = await json<{ token: string; uses: number; namespace: string }>(`${t.url}/api/v1/identity/tokens`, { body: { node_type: nodeType, namespace: 'team-a', ...extra } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return created.body.token;
}

async function bundle(): Promise<string> {
  const response = await fetch(`${t.url}/api/v1/identity/bundle`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /pem/);
  return response.text();
}

describe('identity API', () => {
  it('serves the trust bundle', async () => {
    const pem = await bundle();
    const root = new X509Certificate(pem);
    assert.equal(root.subject, root.issuer);
  });

  it('exchanges a join token and a CSR for an SVID with the exact SPIFFE ID and lifetime', async () => {
    const { pem } = await makeCsr();
    const response = await json<Svid>(`${t.url}/api/v1/identity/svid`, { body: { token: await token('orchestrator'), csr: pem, node_id: 'orch-1', node_type: 'orchestrator' } });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    const cert = new X509Certificate(response.body.certificate);
    const uris = cert
      .getExtension(SubjectAlternativeNameExtension)
      ?.names.items.filter((name) => name.type === 'url')
      .map((name) => name.value);
    assert.deepEqual(uris, ['spiffe://identity.test/node/orchestrator/orch-1']);
    assert.equal(response.body.spiffe_id, 'spiffe://identity.test/node/orchestrator/orch-1');
    assert.equal(cert.notAfter.getTime() - cert.notBefore.getTime(), 1800 * 1000);
    assert.ok(Math.abs(cert.notBefore.getTime() - Date.now()) < 10_000);
    const verified = await verifySvidChain(response.body.certificate, await bundle(), new Date());
    assert.equal(verified.serial, response.body.serial);
    assert.equal(verified.namespace, 'team-a');
    assert.ok(t.server.identity);
    await t.server.identity.verify(response.body.certificate);
  });

  it('takes the node_type from the SPIFFE ID the CSR asks for', async () => {
    const { pem } = await makeCsr(undefined, `spiffe://${TD}/node/reducer/red-1`);
    const response = await json<Svid>(`${t.url}/api/v1/identity/svid`, { body: { token: await token('reducer'), csr: pem, node_id: 'red-1' } });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.equal(response.body.spiffe_id, `spiffe://${TD}/node/reducer/red-1`);
    const other = await makeCsr(undefined, `spiffe://${TD}/node/reducer/someone-else`);
    await expectProblem(json(`${t.url}/api/v1/identity/svid`, { body: { token: await token('reducer'), csr: other.pem, node_id: 'red-1' } }), 400, 'CSR_INVALID');
  });

  it('refuses a used token, a token for another node_type, an expired token and an unknown one', async () => {
    const single = await token('registry');
    const first = await json(`${t.url}/api/v1/identity/svid`, { body: { token: single, csr: (await makeCsr()).pem, node_id: 'reg-1', node_type: 'registry' } });
    assert.equal(first.status, 201);
    const reused = await expectProblem(
      json(`${t.url}/api/v1/identity/svid`, { body: { token: single, csr: (await makeCsr()).pem, node_id: 'reg-2', node_type: 'registry' } }),
      401,
      'JOIN_TOKEN_INVALID',
    );
    assert.match(reused.detail, /already been used/);

    const forReducers = await token('reducer');
    await expectProblem(json(`${t.url}/api/v1/identity/svid`, { body: { token: forReducers, csr: (await makeCsr()).pem, node_id: 'x-1', node_type: 'orchestrator' } }), 403, 'JOIN_TOKEN_FORBIDDEN');
    // The refused attempt did not use the token up.
    const right = await json(`${t.url}/api/v1/identity/svid`, { body: { token: forReducers, csr: (await makeCsr()).pem, node_id: 'x-1', node_type: 'reducer' } });
    assert.equal(right.status, 201);

    const shortLived = await token('reducer', { ttl_seconds: 1 });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const expired = await expectProblem(
      json(`${t.url}/api/v1/identity/svid`, { body: { token: shortLived, csr: (await makeCsr()).pem, node_id: 'x-2', node_type: 'reducer' } }),
      401,
      'JOIN_TOKEN_INVALID',
    );
    assert.match(expired.detail, /expired/);

    await expectProblem(json(`${t.url}/api/v1/identity/svid`, { body: { token: 'rcjt_nope', csr: (await makeCsr()).pem, node_id: 'x-3', node_type: 'reducer' } }), 401, 'JOIN_TOKEN_INVALID');

    // Each refusal is counted and audited with its code; the issued SVIDs are audited as allowed.
    const counted = (await t.server.registry.metrics.registry.getSingleMetric('rollcall_identity_refusals_total')?.get())?.values ?? [];
    const count = (code: string): number => counted.filter((value) => value.labels.action === 'identity.svid' && value.labels.code === code).reduce((sum, value) => sum + value.value, 0);
    assert.equal(count('JOIN_TOKEN_INVALID'), 3);
    assert.equal(count('JOIN_TOKEN_FORBIDDEN'), 1);
    const audit = await json<{ entries: { node_id: string | null; decision: string; reason: string | null; details: Record<string, unknown> }[] }>(
      `${t.url}/api/v1/audit?action=identity.svid&limit=1000`,
    );
    assert.equal(audit.status, 200, JSON.stringify(audit.body));
    const denied = audit.body.entries.filter((entry) => entry.decision === 'denied' && ['reg-2', 'x-1', 'x-2', 'x-3'].includes(String(entry.node_id)));
    assert.deepEqual(denied.map((entry) => `${entry.node_id} ${entry.reason}`).sort(), ['reg-2 JOIN_TOKEN_INVALID', 'x-1 JOIN_TOKEN_FORBIDDEN', 'x-2 JOIN_TOKEN_INVALID', 'x-3 JOIN_TOKEN_INVALID']);
    const allowed = audit.body.entries.filter((entry) => entry.decision === 'allowed' && ['reg-1', 'x-1'].includes(String(entry.node_id)));
    assert.equal(allowed.length, 2);
    assert.ok(allowed.every((entry) => typeof entry.details.spiffe_id === 'string' && typeof entry.details.serial === 'string'));
    assert.ok(!JSON.stringify(audit.body).includes(single), 'a join token is never written to the audit log');
  });

  it('refuses a CSR with a broken signature without using the token', async () => {
    const joinToken = await token('reducer');
    const { pem } = await makeCsr();
    await expectProblem(json(`${t.url}/api/v1/identity/svid`, { body: { token: joinToken, csr: breakSignature(pem), node_id: 'bad-1', node_type: 'reducer' } }), 400, 'CSR_INVALID');
    await expectProblem(json(`${t.url}/api/v1/identity/svid`, { body: { token: joinToken, csr: 'garbage', node_id: 'bad-1', node_type: 'reducer' } }), 400, 'CSR_INVALID');
    const fine = await json(`${t.url}/api/v1/identity/svid`, { body: { token: joinToken, csr: pem, node_id: 'bad-1', node_type: 'reducer' } });
    assert.equal(fine.status, 201);
  });

  it('renews with the current SVID: same key, or a new key with a proof', async () => {
    const { pem, keys } = await makeCsr();
    const issued = await json<Svid>(`${t.url}/api/v1/identity/svid`, { body: { token: await token('reducer'), csr: pem, node_id: 'ren-1', node_type: 'reducer' } });
    const renewed = await json<Svid>(`${t.url}/api/v1/identity/svid/renew`, { body: { certificate: issued.body.certificate, csr: (await makeCsr(keys)).pem } });
    assert.equal(renewed.status, 201, JSON.stringify(renewed.body));
    assert.equal(renewed.body.spiffe_id, issued.body.spiffe_id);
    assert.notEqual(renewed.body.serial, issued.body.serial);

    // A CSR of another key needs a proof by the current key.
    const fresh = await makeCsr();
    await expectProblem(json(`${t.url}/api/v1/identity/svid/renew`, { body: { certificate: issued.body.certificate, csr: fresh.pem } }), 401, 'SVID_INVALID');
    const proof = Buffer.from(await globalThis.crypto.subtle.sign(SIGNING_ALGORITHM, keys.privateKey, fresh.csr.rawData)).toString('base64');
    const rotated = await json<Svid>(`${t.url}/api/v1/identity/svid/renew`, { body: { certificate: issued.body.certificate, csr: fresh.pem, proof } });
    assert.equal(rotated.status, 201, JSON.stringify(rotated.body));
    const forged = Buffer.from(await globalThis.crypto.subtle.sign(SIGNING_ALGORITHM, fresh.keys.privateKey, fresh.csr.rawData)).toString('base64');
    await expectProblem(json(`${t.url}/api/v1/identity/svid/renew`, { body: { certificate: issued.body.certificate, csr: fresh.pem, proof: forged } }), 401, 'SVID_INVALID');
  });

  it('revokes by serial and by SPIFFE ID; revoked SVIDs fail verification and renewal', async () => {
    const one = await makeCsr();
    const a = await json<Svid>(`${t.url}/api/v1/identity/svid`, { body: { token: await token('reducer'), csr: one.pem, node_id: 'rev-1', node_type: 'reducer' } });
    const b = await json<Svid>(`${t.url}/api/v1/identity/svid`, { body: { token: await token('reducer'), csr: (await makeCsr()).pem, node_id: 'rev-2', node_type: 'reducer' } });
    const identity = t.server.identity;
    assert.ok(identity);

    const bySerial = await json<{ serial: string }>(`${t.url}/api/v1/identity/revocations`, { body: { serial: a.body.serial.toUpperCase(), reason: 'key_compromise' } });
    assert.equal(bySerial.status, 201, JSON.stringify(bySerial.body));
    const revokedA = await verifySvidChain(a.body.certificate, await bundle(), new Date(), identity).then(
      () => null,
      (error: unknown) => error,
    );
    assert.equal((revokedA as { code?: string }).code, 'SVID_REVOKED');
    await expectProblem(json(`${t.url}/api/v1/identity/svid/renew`, { body: { certificate: a.body.certificate, csr: (await makeCsr(one.keys)).pem } }), 401, 'SVID_REVOKED');

    const byId = await json(`${t.url}/api/v1/identity/revocations`, { body: { spiffe_id: b.body.spiffe_id } });
    assert.equal(byId.status, 201);
    await assert.rejects(identity.verify(b.body.certificate), (error: unknown) => (error as { code?: string }).code === 'SVID_REVOKED');
    assert.equal(await identity.isRevoked(b.body.serial, b.body.spiffe_id, Date.parse(b.body.not_before)), true);

    const list = await json<{ revocations: Array<{ serial: string | null; spiffe_id: string | null }> }>(`${t.url}/api/v1/identity/revocations`);
    assert.equal(list.status, 200);
    assert.ok(list.body.revocations.some((r) => r.serial === a.body.serial.toLowerCase()));
    assert.ok(list.body.revocations.some((r) => r.spiffe_id === b.body.spiffe_id));

    await expectProblem(json(`${t.url}/api/v1/identity/revocations`, { body: { serial: 'ab', spiffe_id: b.body.spiffe_id } }), 400, 'REVOCATION_INVALID');
    await expectProblem(json(`${t.url}/api/v1/identity/revocations`, { body: { spiffe_id: 'spiffe://elsewhere/node/a/b' } }), 400, 'REVOCATION_INVALID');
  });

  it('answers CA_NOT_CONFIGURED without a CA', async () => {
    const bare = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://' } });
    try {
      await expectProblem(json(`${bare.url}/api/v1/identity/svid`, { body: { token: 'x', csr: 'y', node_id: 'z' } }), 503, 'CA_NOT_CONFIGURED');
    } finally {
      await bare.close();
    }
  });
});
