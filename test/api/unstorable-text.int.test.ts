// Text PostgreSQL cannot store (a NUL character, an unpaired surrogate) is refused at every HTTP door
// with 400 VALIDATION_FAILED naming the field, and changes nothing; registrations of other clients
// sent at the same time are all written.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { assertProblem } from '../support/problems.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

/** JSON text with the escape `\u0000` (or another) where `@@` stands: what a client sends on the wire. */
function withEscape(value: unknown, escape: string): string {
  return JSON.stringify(value).replaceAll('@@', escape);
}

interface Door {
  name: string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  body?: string;
  /** What the problem names: details.field for body fields, details.parameter for query and path parameters. */
  field?: string;
  parameter?: string;
}

const NUL = '\\u0000';
const LONE = '\\ud800';

const DOORS: Door[] = [
  {
    name: 'DAGI register, nested value',
    method: 'POST',
    path: '/api/v1/nodes/register',
    body: withEscape({ node_id: 'txt-1', hostname: 'h', role: 'worker', capabilities: { models: ['llama', 'bad@@'] } }, NUL),
    field: 'capabilities.models[1]',
  },
  { name: 'DAGI register, lone surrogate', method: 'POST', path: '/api/v1/nodes/register', body: withEscape({ node_id: 'txt-1', hostname: 'h@@', role: 'worker' }, LONE), field: 'hostname' },
  {
    name: 'DAGI register, metadata key',
    method: 'POST',
    path: '/api/v1/nodes/register',
    body: withEscape({ node_id: 'txt-1', hostname: 'h', role: 'worker', metadata: { 'k@@': 1 } }, NUL),
    field: 'metadata["k\\u0000"]',
  },
  {
    name: 'DAGI register, endpoints',
    method: 'POST',
    path: '/api/v1/nodes/register',
    body: withEscape({ node_id: 'txt-1', hostname: 'h', role: 'worker', endpoints: { api: { url: 'http://x/@@' } } }, '\\udfff'),
    field: 'endpoints.api.url',
  },
  { name: 'DAGI heartbeat, metrics', method: 'POST', path: '/api/v1/nodes/heartbeat', body: withEscape({ node_id: 'txt-seed', metrics: { load: 'x@@' } }, NUL), field: 'metrics.load' },
  { name: 'DAGI delete, reason', method: 'DELETE', path: '/api/v1/nodes/txt-seed?reason=a%00b', parameter: 'reason' },
  {
    name: 'introspection, configuration key',
    method: 'POST',
    path: '/api/v1/introspection',
    body: withEscape({ node_id: 'txt-2', node_type: 'effect', configuration: { '@@': true } }, LONE),
    field: 'configuration["\\ud800"]',
  },
  {
    name: 'introspection in an envelope',
    method: 'POST',
    path: '/api/v1/introspection',
    body: withEscape({ envelope_version: '1.0', event_id: 'e-1', event_type: 'NODE_INTROSPECTION', payload: { node_id: 'txt-2', node_type: 'effect', current_state: { note: '@@' } } }, NUL),
    field: 'payload.current_state.note',
  },
  {
    name: 'events, introspection',
    method: 'POST',
    path: '/api/v1/events',
    body: withEscape({ envelope_version: '1.0', event_id: 'e-2', event_type: 'NODE_INTROSPECTION', payload: { node_id: 'txt-3', node_type: 'effect', capabilities: { x: ['@@'] } } }, NUL),
    field: 'payload.capabilities.x[0]',
  },
  {
    name: 'events, heartbeat',
    method: 'POST',
    path: '/api/v1/events',
    body: withEscape({ envelope_version: '1.0', event_id: 'e-3', event_type: 'NODE_HEARTBEAT', payload: { node_id: 'txt-seed', metrics: { '@@': 1 } } }, LONE),
    field: 'payload.metrics["\\ud800"]',
  },
  {
    name: 'events, envelope field',
    method: 'POST',
    path: '/api/v1/events',
    body: withEscape({ envelope_version: '1.0', event_id: 'e-@@', event_type: 'NODE_TOMBSTONE', payload: { node_id: 'txt-seed' } }, NUL),
    field: 'event_id',
  },
  {
    name: 'Consul service register, Meta',
    method: 'PUT',
    path: '/v1/agent/service/register',
    body: withEscape({ Name: 'txtsvc', ID: 'txtsvc-2', Meta: { version: '1@@' } }, NUL),
    field: 'Meta.version',
  },
  { name: 'Consul service register, Tags', method: 'PUT', path: '/v1/agent/service/register', body: withEscape({ Name: 'txtsvc', ID: 'txtsvc-2', Tags: ['ok', '@@'] }, LONE), field: 'Tags[1]' },
  { name: 'Consul check update, Output', method: 'PUT', path: '/v1/agent/check/update/txt-ttl', body: withEscape({ Status: 'passing', Output: 'fine@@' }, NUL), field: 'Output' },
  { name: 'Consul check pass, note', method: 'PUT', path: '/v1/agent/check/pass/txt-ttl?note=a%00', parameter: 'note' },
  { name: 'Consul deregister, path', method: 'PUT', path: '/v1/agent/service/deregister/a%00b', parameter: 'id' },
  { name: 'Consul catalog read, path', method: 'GET', path: '/v1/catalog/service/a%00b', parameter: 'name' },
  { name: 'role profile, config key', method: 'PUT', path: '/api/v1/profiles/worker', body: withEscape({ config: { limits: { 'a@@b': 1 } } }, NUL), field: 'config.limits["a\\u0000b"]' },
  { name: 'namespace policy', method: 'PUT', path: '/api/v1/namespaces/default/policy', body: withEscape({ expression: 'node.node_type != "@@"' }, NUL), field: 'expression' },
  { name: 'API key, name', method: 'POST', path: '/api/v1/admin/keys', body: withEscape({ scope: 'admin', name: 'ops@@' }, NUL), field: 'name' },
  { name: 'API key revoke, id', method: 'DELETE', path: '/api/v1/admin/keys/a%00b', parameter: 'id' },
  { name: 'audit filter, action', method: 'GET', path: '/api/v1/audit?action=node.register%00', parameter: 'action' },
  { name: 'node list filter, role', method: 'GET', path: '/api/v1/nodes?role=%00', parameter: 'role' },
  { name: 'identity revocation', method: 'POST', path: '/api/v1/identity/revocations', body: withEscape({ spiffe_id: 'spiffe://rollcall/node/x/@@' }, NUL), field: 'spiffe_id' },
];

describe('unstorable text at every door', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ config: { leaseTtlSeconds: 3600 } });
    assert.equal((await json(`${t.url}/api/v1/nodes/register`, { body: { node_id: 'txt-seed', hostname: 'h', role: 'worker' } })).status, 201);
    assert.equal((await json(`${t.url}/v1/agent/service/register`, { method: 'PUT', body: { Name: 'txtsvc', ID: 'txtsvc-1', Check: { CheckID: 'txt-ttl', TTL: '1h' } } })).status, 200);
  });
  after(async () => {
    await t.close();
  });

  const send = (door: Door): Promise<{ status: number; contentType: string; body: unknown }> =>
    json(`${t.url}${door.path}`, { method: door.method, ...(door.body === undefined ? {} : { rawBody: door.body }) });

  for (const door of DOORS) {
    it(`refuses it: ${door.name}`, async () => {
      const version = t.server.registry.view.version;
      const problem = assertProblem(await send(door), 400, 'VALIDATION_FAILED');
      if (door.field !== undefined) assert.equal(problem.details?.field, door.field, JSON.stringify(problem));
      if (door.parameter !== undefined) assert.equal(problem.details?.parameter, door.parameter, JSON.stringify(problem));
      assert.match(String(problem.details?.reason), /^(nul_character|lone_surrogate)$/, JSON.stringify(problem));
      assert.equal(t.server.registry.view.version, version, 'the topology did not move');
    });
  }

  it('stored nothing the refused requests carried, and still serves', async () => {
    assert.equal((await json(`${t.url}/api/v1/nodes/txt-1`)).status, 404);
    assert.equal((await json(`${t.url}/api/v1/nodes/txt-2`)).status, 404);
    assert.equal((await json(`${t.url}/api/v1/nodes/txt-3`)).status, 404);
    assert.equal((await json(`${t.url}/api/v1/profiles/worker`)).status, 404);
    assert.equal((await json(`${t.url}/api/v1/namespaces/default/policy`)).status, 404);
    assert.equal((await json<{ count: number }>(`${t.url}/api/v1/admin/keys`)).body.count, 0);
    assert.equal((await json<{ status: string }>(`${t.url}/api/v1/nodes/txt-seed`)).body.status, 'online');
    const checks = await json<Array<{ Checks: Array<{ CheckID: string; Output: string }> }>>(`${t.url}/v1/health/service/txtsvc`);
    assert.equal(checks.body[0]?.Checks.find((check) => check.CheckID === 'txt-ttl')?.Output.includes('\u0000'), false);
    assert.equal((await json(`${t.url}/health`)).status, 200);
  });

  it('accepts text that only looks like it: paired surrogates and a written-out escape', async () => {
    const response = await json<{ outcome: string }>(`${t.url}/api/v1/nodes/register`, {
      rawBody: JSON.stringify({ node_id: 'txt-emoji', hostname: 'h', role: 'worker', metadata: { note: 'ok 😀 \\u0000 \ud83d\ude00', '𝄞': '\u00e9' } }),
    });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    const node = await json<{ metadata: Record<string, string> }>(`${t.url}/api/v1/nodes/txt-emoji`);
    assert.equal(node.body.metadata.note, 'ok 😀 \\u0000 😀');
    assert.equal(node.body.metadata['𝄞'], 'é');
  });

  it('writes every valid registration sent alongside unstorable ones', async (context) => {
    const valid = 500;
    const bad = 100;
    const requests: Array<Promise<{ valid: boolean; status: number }>> = [];
    for (let i = 0; i < valid + bad; i += 1) {
      const isBad = i % 6 === 5 && i / 6 < bad;
      const body = isBad
        ? withEscape({ node_id: `mix-bad-${i}`, hostname: 'h', role: 'mixed', capabilities: { note: i % 2 === 0 ? '@@' : 'x' }, metadata: i % 2 === 0 ? {} : { '@@': 1 } }, i % 4 === 1 ? LONE : NUL)
        : JSON.stringify({ node_id: `mix-ok-${i}`, hostname: 'h', role: 'mixed', capabilities: { n: i } });
      requests.push(json(`${t.url}/api/v1/nodes/register`, { rawBody: body }).then((response) => ({ valid: !isBad, status: response.status })));
    }
    const answers = await Promise.all(requests);
    const validAnswers = answers.filter((answer) => answer.valid);
    const refusedValid = validAnswers.filter((answer) => answer.status !== 201).length;
    context.diagnostic(`valid registrations refused: ${refusedValid} of ${validAnswers.length} (sent with ${answers.length - validAnswers.length} unstorable ones)`);
    assert.equal(
      refusedValid,
      0,
      `statuses of valid writes: ${JSON.stringify(
        validAnswers
          .map((answer) => answer.status)
          .filter((status) => status !== 201)
          .slice(0, 10),
      )}`,
    );
    for (const answer of answers.filter((item) => !item.valid)) assert.equal(answer.status, 400);
    const listed = await json<{ count: number }>(`${t.url}/api/v1/nodes?role=mixed&limit=1000`);
    assert.equal(listed.body.count, validAnswers.length);
  });
});
