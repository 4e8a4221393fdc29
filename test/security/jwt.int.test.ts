// Bearer JWTs verified against a JWKS served over real HTTP: a token's scope and namespace claims
// confine it like an API key's, and a token rollcall cannot trust (foreign key, wrong issuer or
// audience, expired, without the claims) is refused with a problem document, a metric and an audit entry.
import { strict as assert } from 'node:assert';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { pollUntil } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

type SigningKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

const ISSUER = 'https://idp.test';
const AUDIENCE = 'rollcall';

let jwks: Server;
let trusted: SigningKey;
let foreign: SigningKey;
let t: TestServer;
let jwksFetches = 0;

async function token(claims: JWTPayload, options: { key?: SigningKey; kid?: string; expiresIn?: string | number; issuer?: string; audience?: string } = {}): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: options.kid ?? 'trusted' })
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? AUDIENCE)
    .setSubject(typeof claims.sub === 'string' ? claims.sub : 'svc-deployer')
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? '5m')
    .sign(options.key ?? trusted);
}

const bearer = (value: string): Record<string, string> => ({ authorization: `Bearer ${value}` });

function dagi(nodeId: string, namespace: string): Record<string, unknown> {
  return { node_id: nodeId, hostname: 'host', node_type: 'worker', node_version: '1.0.0', role: 'worker', namespace };
}

async function denialsCounted(): Promise<number> {
  const metric = t.server.registry.metrics.registry.getSingleMetric('rollcall_auth_denials_total');
  const values = (await metric?.get())?.values ?? [];
  return values.filter((value) => value.labels.reason === 'invalid_jwt').reduce((sum, value) => sum + value.value, 0);
}

describe('JWT bearer tokens verified against a JWKS', () => {
  before(async () => {
    const pair = await generateKeyPair('ES256');
    trusted = pair.privateKey;
    foreign = (await generateKeyPair('ES256')).privateKey;
    const published = { keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'trusted', alg: 'ES256', use: 'sig' }] };
    jwks = createServer((request, response) => {
      jwksFetches += 1;
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(published));
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json`;
    t = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://', jwksUrl, jwtIssuer: ISSUER, jwtAudience: AUDIENCE, rateLimitPerMinute: 100_000 } });
  });
  after(async () => {
    await t.close();
    await new Promise((resolve) => jwks.close(resolve));
  });

  it('requires a credential once a JWKS is configured', async () => {
    const response = await json(`${t.url}/api/v1/nodes`);
    assert.equal(response.status, 401, JSON.stringify(response.body));
    assert.equal(response.body.code, 'UNAUTHENTICATED');
  });

  it('lets a token with nodes:write in alpha register there, read it back, and fetches the JWKS', async () => {
    const writer = await token({ scope: 'nodes:write', namespace: 'alpha' });
    const registered = await json(`${t.url}/api/v1/nodes/register`, { headers: bearer(writer), body: dagi('jwt-node', 'alpha') });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
    assert.equal(registered.body.namespace, 'alpha');
    const read = await json(`${t.url}/api/v1/nodes/jwt-node?namespace=alpha`, { headers: bearer(writer) });
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.ok(jwksFetches >= 1, 'the key set was fetched from the JWKS URL');
  });

  it('confines a token to its scope and namespace', async () => {
    const version = t.server.registry.view.version;
    const reader = await token({ scope: 'nodes:read', namespace: 'alpha' });
    const readOnly = await json(`${t.url}/api/v1/nodes/register`, { headers: bearer(reader), body: dagi('jwt-reader', 'alpha') });
    assert.equal(readOnly.status, 403, JSON.stringify(readOnly.body));
    assert.equal(readOnly.body.code, 'FORBIDDEN_SCOPE');
    const writer = await token({ scope: 'nodes:write', namespace: 'alpha' });
    const elsewhere = await json(`${t.url}/api/v1/nodes/register`, { headers: bearer(writer), body: dagi('jwt-beta', 'beta') });
    assert.equal(elsewhere.status, 403, JSON.stringify(elsewhere.body));
    assert.equal(elsewhere.body.code, 'FORBIDDEN_NAMESPACE');
    const peek = await json(`${t.url}/api/v1/nodes?namespace=beta`, { headers: bearer(writer) });
    assert.equal(peek.status, 403, JSON.stringify(peek.body));
    assert.equal(t.server.registry.view.version, version, 'nothing was written');
  });

  it('refuses tokens it cannot trust, counts and audits each, and changes nothing', async () => {
    const version = t.server.registry.view.version;
    const counted = await denialsCounted();
    const admin = await token({ scope: 'admin', namespace: '*', sub: 'auditor' });
    const audited = async (): Promise<number> => {
      const response = await json(`${t.url}/api/v1/audit?action=auth.denied&decision=denied&limit=1000`, { headers: bearer(admin) });
      assert.equal(response.status, 200, JSON.stringify(response.body));
      return (response.body.entries as { reason: string }[]).filter((entry) => entry.reason === 'invalid_jwt').length;
    };
    const auditedBefore = await audited();
    const untrusted = [
      ['a foreign key', await token({ scope: 'admin', namespace: '*' }, { key: foreign })],
      ['a foreign key posing as the trusted kid', await token({ scope: 'admin', namespace: '*' }, { key: foreign, kid: 'trusted' })],
      ['another issuer', await token({ scope: 'admin', namespace: '*' }, { issuer: 'https://evil.test' })],
      ['another audience', await token({ scope: 'admin', namespace: '*' }, { audience: 'someone-else' })],
      ['an expired token', await token({ scope: 'admin', namespace: '*' }, { expiresIn: Math.floor(Date.now() / 1000) - 600 })],
      ['no namespace claim', await token({ scope: 'admin' })],
      ['no known scope', await token({ scope: 'root superuser', namespace: '*' })],
    ] as const;
    for (const [what, value] of untrusted) {
      const response = await json(`${t.url}/api/v1/nodes/register`, { headers: bearer(value), body: dagi('jwt-intruder', 'alpha') });
      assert.equal(response.status, 401, `${what}: ${JSON.stringify(response.body)}`);
      assert.match(response.contentType, /^application\/problem\+json/, what);
      assert.equal(response.body.code, 'UNAUTHENTICATED', what);
    }
    assert.equal(await denialsCounted(), counted + untrusted.length, 'each refusal counted');
    await pollUntil(audited, (count) => count === auditedBefore + untrusted.length, { timeoutMs: 10_000, what: 'an audit entry per refusal' });
    assert.equal(t.server.registry.view.version, version, 'nothing was written');
    assert.equal((await json(`${t.url}/api/v1/nodes/jwt-intruder?namespace=alpha`, { headers: bearer(admin) })).status, 404);
  });
});
