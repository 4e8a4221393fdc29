// What the mTLS and enforce-mode tests ask of a registry served over HTTPS: enrolment of a node
// (join token, CSR, SVID) and an operator's view of the topology version, the audit log and the
// auth denial counter, all read with an admin key over TLS.
import { strict as assert } from 'node:assert';
import type { SvidCredentials } from '../../src/security/signing.js';
import { makeCsr } from '../security/ca-support.js';
import { privateKeyPem, tlsJson, tlsText, type TlsClient } from './test-ca.js';
import type { StoredAuditEntry as AuditEntry } from '../../src/store/store.js';
export type { AuditEntry };

/** A node enrolled over TLS: its client for mTLS, its credentials for signing, and its serial. */
export interface EnrolledNode {
  client: TlsClient;
  credentials: SvidCredentials;
  serial: string;
}

export class TlsRegistry {
  /** `url`: the registry's https URL; `serverCa`: the PEM its server certificate chains to. */
  constructor(
    private readonly url: string,
    private readonly serverCa: string,
    private readonly adminKey: () => string,
  ) {}

  /** A client without a certificate, trusting the server's. */
  plain(): TlsClient {
    return { ca: this.serverCa };
  }

  private admin(): Record<string, string> {
    return { authorization: `Bearer ${this.adminKey()}` };
  }

  /** A node enrolled the way a node does it: a join token from an operator, a CSR exchanged for an SVID. */
  async enrol(nodeId: string, nodeType: string, namespace = 'default'): Promise<EnrolledNode> {
    const token = await tlsJson<{ token: string }>(`${this.url}/api/v1/identity/tokens`, this.plain(), { body: { namespace, node_type: nodeType }, headers: this.admin() });
    assert.equal(token.status, 201, JSON.stringify(token.body));
    const { pem, keys } = await makeCsr();
    const svid = await tlsJson<{ certificate: string; serial: string }>(`${this.url}/api/v1/identity/svid`, this.plain(), {
      body: { token: token.body.token, csr: pem, node_id: nodeId, node_type: nodeType },
    });
    assert.equal(svid.status, 201, JSON.stringify(svid.body));
    return {
      client: { ca: this.serverCa, cert: svid.body.certificate, key: privateKeyPem(keys.privateKey) },
      credentials: { certificatePem: svid.body.certificate, privateKey: keys.privateKey },
      serial: svid.body.serial,
    };
  }

  async topologyVersion(): Promise<number> {
    const response = await tlsJson<{ version: number }>(`${this.url}/api/v1/topology`, this.plain(), { headers: this.admin() });
    assert.equal(response.status, 200);
    return response.body.version;
  }

  async audit(query: string): Promise<AuditEntry[]> {
    const response = await tlsJson<{ entries: AuditEntry[] }>(`${this.url}/api/v1/audit?${query}`, this.plain(), { headers: this.admin() });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body.entries;
  }

  /** rollcall_auth_denials_total{reason} as /metrics shows it to an operator. */
  async denials(reason: string): Promise<number> {
    const response = await tlsText(`${this.url}/metrics`, this.plain(), { headers: this.admin() });
    assert.equal(response.status, 200);
    const line = response.body.split('\n').find((candidate) => candidate.startsWith(`rollcall_auth_denials_total{reason="${reason}"}`));
    return line === undefined ? 0 : Number(line.split(' ')[1]);
  }
}
