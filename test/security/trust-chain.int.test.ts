// The whole chain of trust, as a node lives it: the registry's own CA, a join token, a CSR
// exchanged for an SVID, and an agent whose signed announcements an enforcing registry accepts;
// the same agent cannot speak for another node, and a revoked SVID is refused.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { HttpTransport } from '../../src/agent/http-transport.js';
import { NodeAgent } from '../../src/agent/node-agent.js';
import { initCaFiles } from '../../src/security/ca.js';
import { signEnvelope, type SvidCredentials } from '../../src/security/signing.js';
import { envelope } from '../../src/domain/events.js';
import { makeCsr } from './ca-support.js';
import { waitFor } from '../support/processes.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

describe('chain of trust: CA, join token, SVID, signed announcements', () => {
  let dir: string;
  let t: TestServer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rollcall-trust-'));
    const { certFile, keyFile } = await initCaFiles(join(dir, 'ca'), 'fleet.test');
    t = await startTestServer({ store: 'pglite', config: { dataDir: 'memory://', caCertFile: certFile, caKeyFile: keyFile, trustDomain: 'fleet.test', signatureMode: 'enforce' } });
  });
  after(async () => {
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function enrol(nodeId: string, nodeType: string): Promise<SvidCredentials> {
    const token = await json<{ token: string }>(`${t.url}/api/v1/identity/tokens`, { body: { namespace: 'default', node_type: nodeType } });
    assert.equal(token.status, 201, JSON.stringify(token.body));
    const { pem, keys } = await makeCsr();
    const svid = await json<{ certificate: string }>(`${t.url}/api/v1/identity/svid`, { body: { token: token.body.token, csr: pem, node_id: nodeId, node_type: nodeType } });
    assert.equal(svid.status, 201, JSON.stringify(svid.body));
    return { certificatePem: svid.body.certificate, privateKey: keys.privateKey };
  }

  it('accepts the signed announcements of an enrolled agent, refuses it speaking for another node, and refuses it once revoked', async () => {
    const credentials = await enrol('orchestrator-1', 'orchestrator');
    const agent = new NodeAgent({
      identity: { node_id: 'orchestrator-1', node_type: 'orchestrator' },
      introspect: () => ({ capabilities: { max_concurrent_workflows: 100 } }),
      transport: new HttpTransport({ registryUrl: t.url }),
      signer: credentials,
      heartbeatIntervalMs: 60_000,
    });
    await agent.start();
    const node = await waitFor('the signed announcement', async () => {
      const got = await json<{ status: string; capabilities: Record<string, unknown> }>(`${t.url}/api/v1/nodes/orchestrator-1`);
      return got.status === 200 ? got.body : undefined;
    });
    assert.equal(node.status, 'online');

    // The same SVID signing an announcement of another node: refused, nothing written.
    const version = (await json<{ version: number }>(`${t.url}/api/v1/topology`)).body.version;
    const forged = await signEnvelope(envelope('NODE_INTROSPECTION', 'orchestrator-2', { node_id: 'orchestrator-2', node_type: 'orchestrator' }), credentials);
    const refused = await json<{ code: string }>(`${t.url}/api/v1/introspection`, { body: forged });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, 'IDENTITY_MISMATCH');
    assert.equal((await json(`${t.url}/api/v1/nodes/orchestrator-2`)).status, 404);
    assert.equal((await json<{ version: number }>(`${t.url}/api/v1/topology`)).body.version, version);

    // Unsigned: refused in enforce mode.
    const unsigned = await json<{ code: string }>(`${t.url}/api/v1/introspection`, {
      body: envelope('NODE_INTROSPECTION', 'orchestrator-3', { node_id: 'orchestrator-3', node_type: 'orchestrator' }),
    });
    assert.equal(unsigned.body.code, 'SIGNATURE_REQUIRED');

    // Revoked by SPIFFE ID: its next announcement is refused.
    const revoked = await json(`${t.url}/api/v1/identity/revocations`, { body: { spiffe_id: 'spiffe://fleet.test/node/orchestrator/orchestrator-1' } });
    assert.ok(revoked.status >= 200 && revoked.status < 300, JSON.stringify(revoked.body));
    const after = await json<{ code: string }>(`${t.url}/api/v1/introspection`, {
      body: await signEnvelope(envelope('NODE_INTROSPECTION', 'orchestrator-1', { node_id: 'orchestrator-1', node_type: 'orchestrator', capabilities: { max_concurrent_workflows: 5 } }), credentials),
    });
    assert.equal(after.body.code, 'CERTIFICATE_REVOKED');
    await agent.stop().catch(() => undefined);
  });
});
