// Property-based fuzzing of the HTTP API on real PostgreSQL: thousands of invalid requests (one
// mutation of a valid template each) must all get a 4xx problem document and write nothing.
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { initCaFiles } from '../../src/security/ca.js';
import { json, startTestServer, type TestServer } from '../support/server.js';

interface RawRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

interface RawResponse {
  status: number;
  contentType: string;
  text: string;
}

let t: TestServer;
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

/** node:http rather than fetch: bodies of any bytes with any content-type, and paths sent as written. */
function send(request: RawRequest): Promise<RawResponse> {
  const { hostname, port } = new URL(t.url);
  const body = request.body === undefined ? undefined : Buffer.isBuffer(request.body) ? request.body : Buffer.from(request.body, 'utf8');
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        hostname,
        port,
        method: request.method,
        path: request.path,
        headers: {
          ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(body.length) }),
          ...request.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'] ?? '', text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Stored state a refused request must not move; the registry's own node is left out (it heartbeats itself). */
async function snapshot(): Promise<unknown> {
  const self = t.server.registryId;
  const topology = await json<{ version: number; nodes: Array<{ node_id: string }> }>(`${t.url}/api/v1/topology?namespace=default`);
  const listed = await json<{ nodes: Array<{ node_id: string }>; topology_version: number }>(`${t.url}/api/v1/nodes?limit=1000&namespace=*&status=online,offline,removed`);
  const stored = await t.server.registry.store.loadNodes();
  const profile = await json(`${t.url}/api/v1/profiles/worker`);
  const fuzzedProfile = await json(`${t.url}/api/v1/profiles/fz-role`);
  return {
    version: topology.body.version,
    topology: topology.body.nodes.filter((node) => node.node_id !== self),
    listed: listed.body.nodes.filter((node) => node.node_id !== self),
    stored: { version: stored.version, nodes: stored.nodes.filter((node) => node.node_id !== self).sort((a, b) => a.node_id.localeCompare(b.node_id)) },
    profile: profile.body,
    fuzzedProfile: fuzzedProfile.status,
  };
}

let version: number;
let requests = 0;

/** The oracle: a 4xx problem document whose status matches, and no topology write. */
async function refused(request: RawRequest): Promise<void> {
  requests += 1;
  const response = await send(request);
  const where = `${request.method} ${request.path.slice(0, 300)} -> ${response.status} ${response.text.slice(0, 300)}`;
  assert.ok(response.status >= 400 && response.status <= 499, where);
  assert.match(response.contentType, /^application\/problem\+json/, where);
  const problem = JSON.parse(response.text) as { code: unknown; status: unknown };
  assert.equal(typeof problem.code, 'string', where);
  assert.equal(problem.status, response.status, where);
  assert.equal(t.server.registry.view.version, version, `${where}: the topology moved`);
}

// ---- Generators of bad values -------------------------------------------------------------------

const DEEP = '@@DEEP@@';
/** A body as an object plus, optionally, a deeply nested value spliced into its text (too deep to build as an object). */
interface Body {
  value: unknown;
  deep?: string;
}
const text = (body: Body): string => {
  const serialised = JSON.stringify(body.value);
  return body.deep === undefined ? serialised : serialised.replace(JSON.stringify(DEEP), body.deep);
};
const deepText = fc
  .record({ depth: fc.integer({ min: 70, max: 30_000 }), arrays: fc.boolean() })
  .map(({ depth, arrays }) => (arrays ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`));

// Finite doubles only: JSON.stringify writes NaN and Infinity as null, which some fields accept.
const nonString = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
);
const nonObject = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.string({ maxLength: 20 }), fc.array(fc.integer(), { maxLength: 3 }));
const nanLike = fc.constantFrom('NaN', 'Infinity', '-Infinity', '1e309', '0x10', '1_000', ' 1', '1 ', '');
const badInteger = fc.oneof(
  fc.integer({ max: -1 }),
  fc.double({ noInteger: true, noDefaultInfinity: true, noNaN: true }),
  fc.constantFrom(2 ** 53, 1e300, -0.5, 1.5),
  nanLike,
  fc.constant(null),
  fc.boolean(),
);
const longString = (min: number): fc.Arbitrary<string> => fc.integer({ min, max: min + 2000 }).map((n) => 'x'.repeat(n));
/** Text the store cannot hold: NUL characters and unpaired surrogates (sent as JSON escapes). */
const unstorableText = fc
  .tuple(fc.string({ maxLength: 8 }), fc.constantFrom('\u0000', '\uD800', '\uDBFF', '\uDC00', '\uDFFF', '\uDE00\uD83D'), fc.string({ maxLength: 8 }))
  .map(([before, bad, after]) => `${before}${bad}${after}`);
/** Strings an identifier pattern (letters, digits, . _ : @ -, starting alphanumeric) refuses. */
const badIdentifier = fc.oneof(
  fc.constant(''),
  fc.constantFrom('-lead', '.dot', 'has space', 'slash/ed', 'ünïcode', 'emoji-😀', 'tab\there', 'new\nline', 'semi;colon', '__proto__?', 'a"quote', 'zero\u0000byte'),
  fc.string({ minLength: 1, maxLength: 20 }).map((s) => `!${s}`),
  longString(256),
);
const badNamespace = fc.oneof(fc.constantFrom('', 'UPPER', '-x', 'x-', 'a_b', 'dot.ted', 'ünï', '*x'), longString(64), nonString);
const prototypeKey = fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty');
const oversized = fc.integer({ min: 128 * 1024 + 1, max: 200 * 1024 }).map((n) => ({ value: { blob: 'x'.repeat(n) } }));
/** A document holding unstorable text somewhere: a value, a nested value, an array item or a key. */
const unstorableDocument = fc.oneof(
  unstorableText.map((text) => ({ note: text })),
  unstorableText.map((text) => ({ a: { b: [1, 'ok', text] } })),
  unstorableText.map((text) => ({ [text]: true })),
  unstorableText.map((text) => ({ nested: { [text]: { x: 1 } } })),
);
/** Document fields: wrong type, too deep, too big, a key too long, text that cannot be stored. */
const badDocument = fc.oneof(
  nonObject.map((value) => ({ value })),
  unstorableDocument.map((value) => ({ value })),
  deepText.map((deep) => ({ value: { nested: DEEP }, deep })),
  fc.integer({ min: 33 * 1024, max: 100 * 1024 }).map((n) => ({ value: { big: 'x'.repeat(n) } })),
);
/** Metadata values rollcall reads as numbers, out of their range (DAGI reads only the lease; introspection the incarnation too). */
const badMetadataLease = fc.record({ lease_ttl_seconds: fc.oneof(fc.integer({ max: 0 }), fc.integer({ min: 604_801 }), fc.constantFrom(1e9, 1e300, 0.5, -1)) });
const badMetadataNumber = fc.oneof(badMetadataLease, fc.record({ incarnation: fc.oneof(fc.integer({ max: -1 }), fc.constantFrom(1.5, 2 ** 53, 1e300)) }));

/** Invalid body texts: not JSON, or not an object. */
const malformedJson = fc.oneof(
  fc.constantFrom(
    '{',
    '{"a":',
    '{"a":1,}',
    "{'a':1}",
    '{"a":NaN}',
    '{"a":Infinity}',
    '{"a":1}}',
    '{"a":1} x',
    'nul',
    'tru',
    '{"a":"\\x"}',
    '{"a":"\u0001"',
    '[1,2',
    '{"__proto__":{"x":1}}',
    '{"constructor":{"prototype":{"x":1}}}',
  ),
  fc.string({ maxLength: 40 }).map((s) => `{${s}`),
  fc.constantFrom('[]', '[1]', '1', '"str"', 'null', 'true', '3.14'),
  deepText,
);
const invalidBytes = fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff, 0xfe]), Buffer.from(bytes), Buffer.from('"')]));
const unsupportedType = fc.constantFrom(
  'text/plain',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'image/png',
  'application/octet-stream',
  'text/json',
  ';;',
  'application/',
);
const jsonTypeVariant = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=latin1',
  'APPLICATION/JSON',
  'application/json;charset=utf-16',
  'application/problem+json',
  'application/vnd.api+json',
);
const extraHeaders = fc.dictionary(
  fc.constantFrom('accept', 'accept-language', 'user-agent', 'x-request-id', 'x-forwarded-for', 'if-none-match', 'x-fuzz', 'last-event-id', 'origin'),
  fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/g, '?')),
  { maxKeys: 3 },
);
/** Junk query values: URL-encoded, with broken escapes sometimes left raw. */
const junk = fc.oneof(fc.string({ maxLength: 30 }).map(encodeURIComponent), fc.constantFrom('%', '%zz', '%E0%A4%A', '%00', '%FF', '%C0%AF'));

/** One mutation of a JSON body: a field set to a bad value, a required one dropped, an unknown key added. */
function mutateBody(template: Record<string, unknown>, fields: Record<string, fc.Arbitrary<Body>>, options: { required: string[]; closed: boolean }): fc.Arbitrary<Body> {
  const choices: Array<fc.Arbitrary<Body>> = Object.entries(fields).map(([field, bad]) => bad.map((body) => ({ ...body, value: { ...template, [field]: body.value } })));
  if (options.required.length > 0) choices.push(fc.constantFrom(...options.required).map((field) => ({ value: Object.fromEntries(Object.entries(template).filter(([key]) => key !== field)) })));
  if (options.closed) {
    const unknown = fc.oneof(
      prototypeKey,
      fc.string({ minLength: 1, maxLength: 12 }).filter((key) => !(key in fields) && !(key in template)),
    );
    choices.push(
      fc
        .tuple(unknown, fc.jsonValue({ maxDepth: 2 }))
        .map(([key, value]) => ({ value: JSON.parse(`${JSON.stringify(template).slice(0, -1)},${JSON.stringify(key)}:${JSON.stringify(value ?? null)}}`) as unknown })),
    );
  }
  return fc.oneof(...choices);
}

/** A request of a JSON route: a mutated body, or a broken body / content type, with random harmless headers. */
function bodyRequests(method: 'POST' | 'PUT', path: fc.Arbitrary<string>, bodies: fc.Arbitrary<Body>, validBody: string): fc.Arbitrary<RawRequest> {
  return fc
    .tuple(
      path,
      fc.oneof(
        { weight: 6, arbitrary: fc.tuple(bodies, jsonTypeVariant).map(([body, type]) => ({ body: text(body), type })) },
        { weight: 2, arbitrary: fc.tuple(malformedJson, jsonTypeVariant).map(([body, type]) => ({ body, type })) },
        { weight: 1, arbitrary: invalidBytes.map((body) => ({ body, type: 'application/json' })) },
        { weight: 1, arbitrary: unsupportedType.map((type) => ({ body: validBody, type })) },
        { weight: 1, arbitrary: oversized.map((body) => ({ body: text(body), type: 'application/json' })) },
        { weight: 1, arbitrary: fc.constant({ body: '', type: 'application/json' }) },
      ),
      extraHeaders,
    )
    .map(([p, { body, type }, headers]) => ({ method, path: p, body, headers: { ...headers, 'content-type': type } }));
}

const assertRefusals = async (arbitrary: fc.Arbitrary<RawRequest>, numRuns: number): Promise<void> => {
  await fc.assert(fc.asyncProperty(arbitrary, refused), { numRuns, includeErrorInReport: true });
};

// ---- Templates ----------------------------------------------------------------------------------

const SEED = {
  dagi: { node_id: 'fz-dagi-1', hostname: 'h1', ip: '10.0.0.1', role: 'worker', labels: ['zone-a'], capabilities: { gpu: true } },
  introspection: { node_id: 'fz-intro-1', node_type: 'orchestrator', node_version: '1.0.0', incarnation: 1000, capabilities: { max: 10 }, metadata: { role: 'orchestrator' } },
  consul: { Name: 'fzsvc', ID: 'fzsvc-1', Tags: ['a'], Port: 8080, Meta: { version: '1.0.0' }, Check: { CheckID: 'fz-ttl', TTL: '1h', Status: 'passing' } },
};

let caDir: string;

before(async () => {
  // A CA, so the identity endpoints are fuzzed past CA_NOT_CONFIGURED.
  caDir = await mkdtemp(join(tmpdir(), 'rollcall-fuzz-ca-'));
  const { certFile, keyFile } = await initCaFiles(join(caDir, 'ca'), 'fuzz.test');
  t = await startTestServer({ config: { leaseTtlSeconds: 3600, caCertFile: certFile, caKeyFile: keyFile } });
  assert.equal((await json(`${t.url}/api/v1/nodes/register`, { body: SEED.dagi })).status, 201);
  assert.equal((await json(`${t.url}/api/v1/introspection`, { body: SEED.introspection })).status, 201);
  assert.equal((await json(`${t.url}/v1/agent/service/register`, { method: 'PUT', body: SEED.consul })).status, 200);
  assert.equal((await json(`${t.url}/api/v1/nodes/register`, { body: { node_id: 'fz-gone', hostname: 'h2', role: 'worker' } })).status, 201);
  assert.equal((await json(`${t.url}/api/v1/nodes/fz-gone?reason=test`, { method: 'DELETE' })).status, 200);
  assert.equal((await json(`${t.url}/api/v1/profiles/worker`, { method: 'PUT', body: { config: { max_rps: 10 } } })).status, 200);
});
after(async () => {
  agent.destroy();
  await t.close();
  await rm(caDir, { recursive: true, force: true });
});

describe('malformed requests', () => {
  let initial: unknown;
  let started: number;

  it('seeds nodes and takes a snapshot', async () => {
    initial = await snapshot();
    version = t.server.registry.view.version;
    started = performance.now();
  });

  it('POST /api/v1/nodes/register', async () => {
    const template = { node_id: 'fz-new-dagi', hostname: 'h', role: 'worker' };
    const bodies = mutateBody(
      template,
      {
        node_id: fc.oneof(badIdentifier, nonString).map((value) => ({ value })),
        hostname: fc.oneof(fc.constant(''), longString(254), nonString, unstorableText).map((value) => ({ value })),
        ip: fc.oneof(longString(46), nonString).map((value) => ({ value })),
        role: fc.oneof(badIdentifier, nonString).map((value) => ({ value })),
        node_type: fc.oneof(badIdentifier, nonString).map((value) => ({ value })),
        node_version: fc.oneof(fc.constant(''), longString(51), nonString).map((value) => ({ value })),
        namespace: badNamespace.map((value) => ({ value })),
        labels: fc
          .oneof(
            nonObject.filter((v) => !Array.isArray(v)),
            fc.array(fc.oneof(badIdentifier, nonString), { minLength: 1, maxLength: 3 }),
            fc.constant(Array.from({ length: 65 }, (_, i) => `l${i}`)),
          )
          .map((value) => ({ value })),
        incarnation: badInteger.map((value) => ({ value })),
        lease_ttl_seconds: fc.oneof(fc.constantFrom(0, -1, 0.5, 604_801, 1e300), nanLike, fc.constant(null)).map((value) => ({ value })),
        health_status: fc.oneof(fc.constantFrom('ok', 'HEALTHY', 'Healthy', ''), nonString).map((value) => ({ value })),
        metadata: fc.oneof(
          badDocument,
          badMetadataLease.map((value) => ({ value })),
        ),
        capabilities: badDocument,
        endpoints: badDocument,
      },
      { required: ['hostname', 'role'], closed: true },
    );
    await assertRefusals(bodyRequests('POST', fc.constant('/api/v1/nodes/register'), bodies, JSON.stringify(template)), 500);
  });

  it('POST /api/v1/introspection, bare and in an envelope', async () => {
    const payload = { node_id: 'fz-new-intro', node_type: 'orchestrator', incarnation: 5 };
    const payloadFields = {
      node_id: fc.oneof(badIdentifier, nonString).map((value) => ({ value })),
      node_type: fc.oneof(badIdentifier, nonString).map((value) => ({ value })),
      node_name: fc.oneof(longString(256), nonString, unstorableText).map((value) => ({ value })),
      node_version: fc.oneof(fc.constant(''), longString(51), nonString).map((value) => ({ value })),
      namespace: badNamespace.map((value) => ({ value })),
      incarnation: badInteger.map((value) => ({ value })),
      lease_ttl_seconds: fc.oneof(fc.constantFrom(0, -1, 604_801, 1e300), nanLike).map((value) => ({ value })),
      reason: fc.oneof(fc.constantFrom('', 'has space', 'ünï'), longString(101), nonString).map((value) => ({ value })),
      introspection_timestamp: fc.oneof(longString(65), nonString).map((value) => ({ value })),
      metadata: fc.oneof(
        badDocument,
        badMetadataNumber.map((value) => ({ value })),
      ),
      capabilities: badDocument,
      configuration: badDocument,
      current_state: badDocument,
      endpoints: badDocument,
    };
    const bare = mutateBody(payload, payloadFields, { required: ['node_id', 'node_type'], closed: false });
    const envelope = { envelope_version: '1.0', event_id: 'e-1', event_type: 'NODE_INTROSPECTION', correlation_id: 'c', payload };
    const enveloped = fc.oneof(
      mutateBody(
        envelope,
        {
          envelope_version: fc.oneof(longString(17), nonString).map((value) => ({ value })),
          event_id: fc.oneof(fc.constant(''), longString(129), nonString).map((value) => ({ value })),
          event_type: fc.oneof(fc.constantFrom('', 'NODE_HEARTBEAT', 'node_introspection', 'NODE_INTROSPECTION '), longString(65), nonString).map((value) => ({ value })),
          correlation_id: fc.oneof(longString(129), nonString, unstorableText).map((value) => ({ value })),
          security: nonObject.map((value) => ({ value })),
          payload: nonObject.map((value) => ({ value })),
        },
        { required: ['event_id', 'event_type'], closed: false },
      ),
      bare.map((body) => ({ ...body, value: { ...envelope, payload: body.value } })),
    );
    await assertRefusals(bodyRequests('POST', fc.constant('/api/v1/introspection'), fc.oneof(bare, enveloped), JSON.stringify(payload)), 600);
  });

  it('POST /api/v1/events (node events in an envelope)', async () => {
    // Heartbeats and tombstones name a node the registry does not hold, so a variant that happens to
    // be well formed is still refused (404) and changes nothing; introspections are mutated bodies.
    const event = (eventType: string, payload: Record<string, unknown>): Record<string, unknown> => ({ envelope_version: '1.0', event_id: 'e-ev', event_type: eventType, payload });
    const envelopeFields = (payload: Record<string, unknown>): Record<string, fc.Arbitrary<Body>> => ({
      envelope_version: fc.oneof(longString(17), nonString).map((value) => ({ value })),
      event_id: fc.oneof(fc.constant(''), longString(129), nonString).map((value) => ({ value })),
      event_type: fc.oneof(fc.constantFrom('', 'node_heartbeat', 'TOPOLOGY_DIFF', 'REGISTRY_REQUEST_INTROSPECTION', 'NODE_HEARTBEAT '), longString(65), nonString).map((value) => ({ value })),
      correlation_id: fc.oneof(longString(129), nonString).map((value) => ({ value })),
      security: nonObject.map((value) => ({ value })),
      payload: fc.oneof(nonObject, fc.constant(payload)).map((value) => ({ value })),
    });
    const heartbeat = { node_id: 'fz-unknown', incarnation: 1 };
    const tombstone = { node_id: 'fz-unknown', node_type: 'worker', removal_reason: 'graceful_shutdown' };
    // A removed node's heartbeat is refused (register again); its tombstone is an idempotent 200, so only heartbeats name it.
    const payloadOf = (template: Record<string, unknown>, ids: [string, ...string[]]): fc.Arbitrary<Body> =>
      mutateBody(
        template,
        {
          node_id: fc.oneof(badIdentifier, nonString, fc.constantFrom(...ids)).map((value) => ({ value })),
          namespace: badNamespace.map((value) => ({ value })),
          incarnation: badInteger.map((value) => ({ value })),
          node_type: fc.oneof(badIdentifier, nonString).map((value) => ({ value })),
          health_status: fc.oneof(fc.constantFrom('ok', 'DEGRADED', ''), nonString).map((value) => ({ value })),
          removal_reason: fc.oneof(fc.constantFrom('', 'has space'), longString(101), nonString).map((value) => ({ value })),
        },
        { required: ['node_id'], closed: false },
      );
    const introspection = { node_id: 'fz-new-event', node_type: 'orchestrator', incarnation: 5 };
    const bodies = fc.oneof(
      mutateBody(event('NODE_HEARTBEAT', heartbeat), envelopeFields(heartbeat), { required: ['event_id', 'event_type', 'payload'], closed: false }),
      payloadOf(heartbeat, ['fz-unknown', 'fz-gone']).map((body) => ({ ...body, value: event('NODE_HEARTBEAT', body.value as Record<string, unknown>) })),
      payloadOf(tombstone, ['fz-unknown']).map((body) => ({ ...body, value: event('NODE_TOMBSTONE', body.value as Record<string, unknown>) })),
      mutateBody(
        introspection,
        {
          node_id: fc.oneof(badIdentifier, nonString).map((value) => ({ value })),
          node_type: fc.oneof(badIdentifier, nonString).map((value) => ({ value })),
          namespace: badNamespace.map((value) => ({ value })),
          incarnation: badInteger.map((value) => ({ value })),
          capabilities: badDocument,
        },
        { required: ['node_id', 'node_type'], closed: false },
      ).map((body) => ({ ...body, value: event('NODE_INTROSPECTION', body.value as Record<string, unknown>) })),
    );
    await assertRefusals(bodyRequests('POST', fc.constant('/api/v1/events'), bodies, JSON.stringify(event('NODE_HEARTBEAT', heartbeat))), 400);
  });

  it('POST /api/v1/nodes/heartbeat', async () => {
    const template = { node_id: SEED.introspection.node_id, incarnation: 1000, health_status: 'degraded' };
    const bodies = mutateBody(
      template,
      {
        node_id: fc.oneof(badIdentifier, nonString, fc.constantFrom('fz-unknown', 'fz-gone')).map((value) => ({ value })),
        namespace: badNamespace.map((value) => ({ value })),
        incarnation: fc.oneof(badInteger, fc.constantFrom(0, 999, 1001, Number.MAX_SAFE_INTEGER)).map((value) => ({ value })),
        status: fc.oneof(longString(51), nonString).map((value) => ({ value })),
        health_status: fc.oneof(fc.constantFrom('ok', 'DEGRADED', ''), nonString).map((value) => ({ value })),
        // Metrics are read and dropped, so only their type is checked.
        metrics: nonObject.map((value) => ({ value })),
      },
      { required: ['node_id'], closed: true },
    );
    await assertRefusals(bodyRequests('POST', fc.constant('/api/v1/nodes/heartbeat'), bodies, JSON.stringify(template)), 300);
  });

  it('DELETE /api/v1/nodes/{id}', async () => {
    const id = fc.oneof(
      { weight: 3, arbitrary: fc.constant(SEED.introspection.node_id) },
      { weight: 2, arbitrary: badIdentifier.filter((s) => s !== '').map(encodeURIComponent) },
      { weight: 1, arbitrary: fc.constantFrom('%zz', '%', '%E0%A4%A', '..%2F..', 'a%2Fb', 'fz-unknown', `${'a'.repeat(513)}`) },
    );
    const query = fc.oneof(
      fc.oneof(fc.constantFrom('', 'has space', 'ünï'), longString(101)).map((reason) => `reason=${encodeURIComponent(reason)}`),
      fc.constantFrom('reason=a&reason=b', 'incarnation=1&incarnation=2'),
      fc.oneof(fc.constantFrom('-1', '1.5', '1e3', 'NaN', '', '0x10', '99999999999999999'), fc.constant('999'), fc.constant('0')).map((n) => `incarnation=${encodeURIComponent(n)}`),
      badNamespace.filter((v): v is string => typeof v === 'string').map((ns) => `namespace=${encodeURIComponent(ns)}`),
      fc.tuple(fc.constantFrom('force', 'cascade', '__proto__', 'constructor'), junk).map(([key, value]) => `${key}=${value}`),
    );
    // Every request has a bad id or a bad query (a valid id with a stale incarnation is a 409).
    const requests = fc.tuple(id, query, extraHeaders).map(([nodeId, q, headers]): RawRequest => ({ method: 'DELETE', path: `/api/v1/nodes/${nodeId}?${q}`, headers }));
    await assertRefusals(requests, 300);
  });

  it('PUT /api/v1/profiles/{role}', async () => {
    const template = { config: { max_rps: 5 } };
    // A profile's config has no size limit of its own (only the body's): wrong types and depth only.
    const badConfig = fc.oneof(
      nonObject.map((value) => ({ value })),
      unstorableDocument.map((value) => ({ value })),
      deepText.map((deep) => ({ value: { nested: DEEP }, deep })),
    );
    const bodies = mutateBody(template, { config: badConfig }, { required: ['config'], closed: true });
    const validRole = fc.constant('/api/v1/profiles/fz-role');
    const badRole = fc.oneof(badIdentifier.filter((s) => s !== '').map(encodeURIComponent), fc.constantFrom('%zz', 'a'.repeat(101))).map((role) => `/api/v1/profiles/${role}`);
    const badNs = badNamespace.filter((v): v is string => typeof v === 'string').map((ns) => `/api/v1/profiles/fz-role?namespace=${encodeURIComponent(ns)}`);
    await assertRefusals(
      fc.oneof(
        { weight: 4, arbitrary: bodyRequests('PUT', validRole, bodies, JSON.stringify(template)) },
        { weight: 1, arbitrary: fc.tuple(fc.oneof(badRole, badNs), extraHeaders).map(([path, headers]): RawRequest => ({ method: 'PUT', path, body: JSON.stringify(template), headers })) },
      ),
      250,
    );
  });

  it('PUT /v1/agent/service/register (Consul)', async () => {
    const template = { Name: 'fzsvc', ID: 'fzsvc-new', Tags: ['b'], Port: 9000, Meta: { env: 'x' }, Check: { TTL: '30s' } };
    const bodies = mutateBody(
      template,
      {
        Name: fc
          .oneof(
            badIdentifier,
            nonString.filter((v) => v !== null),
          )
          .map((value) => ({ value })),
        ID: fc
          .oneof(
            badIdentifier.filter((s) => s !== ''),
            fc.integer(),
            fc.boolean(),
            fc.constant([1]),
          )
          .map((value) => ({ value })),
        Tags: fc
          .oneof(
            fc.integer(),
            fc.string({ maxLength: 5 }),
            fc.array(fc.oneof(fc.integer(), fc.constant(null), longString(256)), { minLength: 1, maxLength: 3 }),
            fc.constant(Array.from({ length: 65 }, (_, i) => `t${i}`)),
          )
          .map((value) => ({ value })),
        Port: fc.oneof(fc.integer({ max: -1 }), fc.integer({ min: 65_536 }), fc.constantFrom(1.5, '80', true, 1e300), nanLike).map((value) => ({ value })),
        Meta: fc
          .oneof(
            fc.oneof(fc.integer(), fc.string(), fc.array(fc.string(), { minLength: 1 })),
            fc
              .tuple(prototypeKey, fc.oneof(fc.integer(), fc.constant(null), fc.constant({ polluted: true })))
              .map(([key, value]) => JSON.parse(`{${JSON.stringify(key)}:${JSON.stringify(value)}}`) as unknown),
            fc.constantFrom({ 'bad key': 'v' }, { ünï: 'v' }, { k: 'x'.repeat(513) }),
            unstorableText.map((text) => ({ version: text })),
            fc.constant(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']))),
          )
          .map((value) => ({ value })),
        Check: fc
          .oneof(
            fc.oneof(fc.integer(), fc.string(), fc.array(fc.integer(), { minLength: 1 })),
            fc.constantFrom(
              {},
              { TTL: '10' },
              { TTL: '0.5s' },
              { TTL: '999999h' },
              { TTL: '169h' },
              { TTL: 30 },
              { TTL: '-1s' },
              { TTL: 'NaN' },
              { HTTP: 'http://x' },
              { TTL: '30s', Status: 'ok' },
              { TTL: '30s', CheckID: 5 },
            ),
          )
          .map((value) => ({ value })),
        Checks: fc
          .oneof(
            fc.oneof(fc.integer(), fc.string(), fc.constant({})),
            fc.constant(Array.from({ length: 17 }, () => ({ TTL: '30s' }))),
            fc.constant([
              { TTL: '30s', CheckID: 'same' },
              { TTL: '30s', CheckID: 'same' },
            ]),
          )
          .map((value) => ({ value })),
        Address: fc.oneof(longString(256), fc.integer(), fc.boolean()).map((value) => ({ value })),
      },
      { required: ['Name'], closed: false },
    );
    const path = fc.oneof(
      { weight: 5, arbitrary: fc.constant('/v1/agent/service/register') },
      { weight: 1, arbitrary: badNamespace.filter((v): v is string => typeof v === 'string' && v !== '').map((ns) => `/v1/agent/service/register?ns=${encodeURIComponent(ns)}`) },
    );
    // Consul accepts any content type, so the unsupported-type case (a valid body) is left out.
    const requests = fc
      .tuple(
        path,
        fc.oneof(
          bodies.map(text),
          malformedJson.filter((body) => body !== 'null' && !body.startsWith('{"constructor"')),
          invalidBytes,
        ),
        extraHeaders,
      )
      .map(([p, body, headers]): RawRequest => ({ method: 'PUT', path: p, body, headers }));
    await assertRefusals(requests, 300);
  });

  it('PUT /v1/agent/check/{pass,warn,fail,update}/{id} (Consul)', async () => {
    const unknownId = fc.oneof(
      fc.string({ minLength: 1, maxLength: 30 }).map((s) => `nope-${encodeURIComponent(s)}`),
      fc.constantFrom('service%3Anope', 'service:fzsvc-unknown', '%zz', 'a'.repeat(513)),
    );
    const actions = fc
      .tuple(fc.constantFrom('pass', 'warn', 'fail'), unknownId, fc.option(junk, { nil: undefined }), extraHeaders)
      .map(([action, id, note, headers]): RawRequest => ({ method: 'PUT', path: `/v1/agent/check/${action}/${id}${note === undefined ? '' : `?note=${note}`}`, headers }));
    const badNs = fc
      .tuple(
        fc.constantFrom('pass', 'warn', 'fail'),
        badNamespace.filter((v): v is string => typeof v === 'string' && v !== ''),
      )
      .map(([action, ns]): RawRequest => ({ method: 'PUT', path: `/v1/agent/check/${action}/fz-ttl?ns=${encodeURIComponent(ns)}`, headers: {} }));
    const update = fc
      .oneof(
        fc.record({ Status: fc.oneof(fc.constantFrom('ok', 'PASSING', ''), nonString) }).map((b) => JSON.stringify(b)),
        fc.record({ Status: fc.constant('passing'), Output: nonString.filter((v) => v !== null) }).map((b) => JSON.stringify(b)),
        fc.record({ Status: fc.constant('passing'), Output: unstorableText }).map((b) => JSON.stringify(b)),
        malformedJson.filter((body) => !body.startsWith('{"constructor"')),
      )
      .map((body): RawRequest => ({ method: 'PUT', path: '/v1/agent/check/update/fz-ttl', body }));
    await assertRefusals(fc.oneof(actions, badNs, update), 200);
  });

  it('GET /v1/health/service/{name} (Consul)', async () => {
    const query = fc.oneof(
      fc
        .oneof(
          fc.constantFrom('-1', '1.5', 'abc', '1e3', '0x1', '123456789012345678901', '%zz'),
          junk.filter((v) => !/^\d*$/.test(v)),
        )
        .map((v) => `index=${v}`),
      fc
        .oneof(
          fc.constantFrom('10', '5x', '-1s', '1.s', 's', '1d', 'NaN', '1e3s', '%zz'),
          fc
            .string({ minLength: 1, maxLength: 8 })
            .filter((s) => !/^\d/.test(s))
            .map(encodeURIComponent),
        )
        .map((v) => `index=1&wait=${v}`),
      fc
        .oneof(
          fc.constantFrom(
            'Foo == "x"',
            'Service.Tags ==',
            '"x" in',
            '(',
            ')',
            'Service.ID == "x" and',
            'Service.ID ~ "x"',
            'Service.ID == "unterminated',
            'not',
            '!!',
            'Service.ID is full',
            'Checks contains',
          ),
          fc.integer({ min: 33, max: 4000 }).map((n) => `${'('.repeat(n)}Service.ID == "x"${')'.repeat(n)}`),
          fc.integer({ min: 33, max: 2000 }).map((n) => `${'not '.repeat(n)}Service.ID == "x"`),
          fc.integer({ min: 100, max: 7000 }).map((n) => '('.repeat(n)),
        )
        .map((f) => `filter=${encodeURIComponent(f)}`),
      fc.constantFrom('passing=maybe', 'passing=2', 'passing=yes', 'passing=true&passing=false', 'index=1&index=2', 'wait=1s&wait=2s', 'ns=UPPER', 'ns=a_b', 'ns=', 'filter=a&filter=b'),
    );
    const requests = fc
      .tuple(fc.constantFrom('fzsvc', 'nothing', 'a%20b', '%zz'), query, extraHeaders)
      .map(([name, q, headers]): RawRequest => ({ method: 'GET', path: `/v1/health/service/${name}?${q}`, headers }));
    await assertRefusals(requests, 300);
  });

  it('GET /api/v1/nodes with malformed query strings', async () => {
    const cursorWithoutSeparator = fc
      .string({ minLength: 1, maxLength: 40 })
      .filter((s) => !s.includes('\u0000'))
      .map((s) => Buffer.from(s, 'utf8').toString('base64url'))
      .filter((s) => s.length > 0);
    const query = fc.oneof(
      fc.constantFrom('0', '1001', '-1', 'abc', '1.5', '1e3', ' 1', '0x10', '99999999999999999999', '%zz', 'NaN').map((v) => `limit=${encodeURIComponent(v)}`),
      fc.oneof(cursorWithoutSeparator, fc.constantFrom('!!!', 'a b', '=', 'a'.repeat(701), '%00', 'AA==')).map((v) => `cursor=${encodeURIComponent(v)}`),
      fc
        .oneof(
          fc.constantFrom('{', 'not json', '[]', '[{"gpu":true}]', '1', '"gpu"', 'null', 'true', '{"a":NaN}', "{'gpu':true}"),
          fc.integer({ min: 4097, max: 6000 }).map((n) => `{"a":"${'x'.repeat(n)}"}`),
        )
        .map((v) => `capability=${encodeURIComponent(v)}`),
      fc.constantFrom('>=>=1', 'not-a-version', '1.2.3.4.5', `${'1'.repeat(101)}`, '>=1.0.0 <', '^^1').map((v) => `version=${encodeURIComponent(v)}`),
      fc
        .oneof(
          fc.constantFrom('up', 'ONLINE', 'online,up', 'deleted'),
          fc
            .string({ minLength: 1, maxLength: 10 })
            .filter((s) => /[^ ,]/.test(s) && !['online', 'offline', 'removed'].includes(s.trim()))
            .filter((s) => s.split(',').some((p) => p.trim() !== '' && !['online', 'offline', 'removed'].includes(p.trim()))),
        )
        .map((v) => `status=${encodeURIComponent(v)}`),
      badNamespace.filter((v): v is string => typeof v === 'string' && v !== '' && v !== '*').map((v) => `namespace=${encodeURIComponent(v)}`),
      fc.tuple(fc.constantFrom('roles', 'page', '__proto__', 'constructor', 'toString', 'limit[]', 'sort'), junk).map(([key, value]) => `${key}=${value}`),
      fc.constantFrom(
        'role=a&role=b',
        'limit=1&limit=2',
        'cursor=a&cursor=b',
        'capability={}&capability={}',
        'version=1&version=2',
        'node_type=a&node_type=b',
        'namespace=a&namespace=b',
        `role=${'r'.repeat(101)}`,
        `node_type=${'t'.repeat(101)}`,
      ),
    );
    const requests = fc
      .tuple(fc.array(fc.constantFrom('role=worker', 'label=zone-a', 'status=online'), { maxLength: 2 }), query, extraHeaders)
      .map(([valid, bad, headers]): RawRequest => ({ method: 'GET', path: `/api/v1/nodes?${[...valid, bad].join('&')}`, headers }));
    await assertRefusals(requests, 400);
  });

  it('GET /api/v1/topology/changes with a bad since, wait or limit', async () => {
    const since = String(version);
    const query = fc.oneof(
      fc.constantFrom('', 'wait=1s', 'limit=1').map((q) => q),
      fc
        .oneof(
          fc.constantFrom('-1', '1.5', 'abc', '1e3', '0x1', '12345678901234567', '%zz', ''),
          junk.filter((v) => !/^\d{1,16}$/.test(v)),
        )
        .map((v) => `since=${v}`),
      fc.constant(`since=${version + 1}`),
      fc.constantFrom('5x', '-1s', '1h', '301s', '10m', '1.s', 'ms', '1e3', '%zz', '1 s').map((v) => `since=${since}&wait=${encodeURIComponent(v)}`),
      fc.constantFrom('0', '10001', '-1', 'x', '1.5').map((v) => `since=${since}&limit=${v}`),
      badNamespace.filter((v): v is string => typeof v === 'string' && v !== '').map((v) => `since=${since}&namespace=${encodeURIComponent(v)}`),
      fc.constantFrom(`since=1&since=2`, `since=${since}&wait=1s&wait=2s`, `since=${since}&foo=bar`, `since=${since}&__proto__=x`),
    );
    const requests = fc.tuple(query, extraHeaders).map(([q, headers]): RawRequest => ({ method: 'GET', path: `/api/v1/topology/changes?${q}`, headers }));
    await assertRefusals(requests, 250);
  });

  it('answers /health afterwards and has stored nothing', async (context) => {
    const seconds = (performance.now() - started) / 1000;
    context.diagnostic(`${requests} refused requests in ${seconds.toFixed(1)} s`);
    const health = await json<{ status: string }>(`${t.url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await snapshot(), initial);
    assert.ok(requests >= 3000, `only ${requests} requests were sent`);
  });
});

// ---- Administration and audit: odd parameters never answer 5xx ----------------------------------

/** Whatever the answer, never a server error: a success, or a 4xx problem document; and no topology write. */
async function answered(request: RawRequest): Promise<void> {
  requests += 1;
  const response = await send(request);
  const where = `${request.method} ${request.path.slice(0, 300)} -> ${response.status} ${response.text.slice(0, 300)}`;
  assert.ok(response.status < 500, where);
  if (response.status >= 400) {
    assert.match(response.contentType, /^application\/problem\+json/, where);
    const problem = JSON.parse(response.text) as { code: unknown; status: unknown };
    assert.equal(typeof problem.code, 'string', where);
    assert.equal(problem.status, response.status, where);
  }
  assert.equal(t.server.registry.view.version, version, `${where}: the topology moved`);
}

/** `examples` are always tried, before the generated requests. */
const assertAnswered = async (arbitrary: fc.Arbitrary<RawRequest>, numRuns: number, examples: RawRequest[] = []): Promise<void> => {
  await fc.assert(fc.asyncProperty(arbitrary, answered), { numRuns, includeErrorInReport: true, examples: examples.map((example) => [example]) });
};
const gets = (paths: string[]): RawRequest[] => paths.map((path) => ({ method: 'GET', path }));

/** Percent-encodes every UTF-16 unit on its own (CESU-8): a lone surrogate becomes bytes no UTF-8 decoder accepts. */
function cesu8(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i += 1) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes.push(unit);
    else if (unit < 0x800) bytes.push(0xc0 | (unit >> 6), 0x80 | (unit & 0x3f));
    else bytes.push(0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f));
  }
  return bytes.map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('');
}

/** Odd values as they appear in a URL: out-of-range dates and numbers, NUL, encoded surrogates, broken escapes. */
const oddParameter = fc.oneof(
  fc.constantFrom(
    '99999-01-01',
    '-1e20',
    '1e20',
    '%2B200000-01-01',
    '-000001-01-01',
    '275760-09-13',
    '0000-01-01',
    '2024-13-45',
    '2024-02-30T25:61:61Z',
    '1970-01-01T00:00:00%2B99:99',
    '2024-01-01T00:00:00.123456789012Z',
    '1e400',
    '-0',
    'NaN',
    'Infinity',
    '0x1F',
    '9'.repeat(400),
    '-9'.repeat(40),
    '%00',
    'a%00b',
    '%ED%A0%80',
    '%ED%BF%BF',
    '%C0%80',
    '%F4%90%80%80',
    '%uD800',
    '%',
    '%zz',
    '%E0%A4%A',
    '',
    '%20',
    '*',
    '..',
    '%2F',
  ),
  fc.integer().map(String),
  fc.double().map(String),
  fc.date({ noInvalidDate: false }).map((date) => encodeURIComponent(Number.isNaN(date.getTime()) ? 'Invalid Date' : date.toISOString())),
  fc.integer({ min: -300_000, max: 300_000 }).map((year) => encodeURIComponent(`${year}-01-01T00:00:00Z`)),
  fc.string({ maxLength: 30 }).map((text) => encodeURIComponent(text)),
  unstorableText.map(cesu8),
);
/** A JSON value for a body field: odd strings (unstorable ones too), numbers out of any range, wrong types. */
const oddJson = fc.oneof(unstorableText, fc.string({ maxLength: 20 }), fc.constantFrom(1e300, -1e300, 2 ** 63, -1, 0.5, '99999-01-01', ''), nonString);
const query = (names: readonly string[]): fc.Arbitrary<string> =>
  fc.array(fc.tuple(fc.constantFrom(...names), oddParameter), { minLength: 1, maxLength: 3 }).map((pairs) => pairs.map(([name, value]) => `${name}=${value}`).join('&'));

describe('administration and audit parameters', () => {
  let started: number;
  it('takes the topology version', () => {
    version = t.server.registry.view.version;
    started = performance.now();
  });

  it('GET /api/v1/audit with odd filters', async () => {
    const requests = fc
      .tuple(query(['namespace', 'action', 'decision', 'since', 'limit', 'cursor']), extraHeaders)
      .map(([q, headers]): RawRequest => ({ method: 'GET', path: `/api/v1/audit?${q}`, headers }));
    await assertAnswered(
      requests,
      400,
      gets([
        '/api/v1/audit?since=99999-01-01',
        '/api/v1/audit?since=-1e20',
        '/api/v1/audit?since=%2B200000-01-01',
        '/api/v1/audit?since=0000-12-31T23:59:59Z',
        '/api/v1/audit?since=0001-01-01T00:00:00%2B01:00',
        '/api/v1/audit?since=-000001-01-01',
        '/api/v1/audit?action=%00',
        '/api/v1/audit?action=%ED%A0%80',
        '/api/v1/audit?limit=1e400',
        '/api/v1/audit?cursor=OTk5OTk5OTk5OTk5OTk5OTk5OTk5',
        '/api/v1/audit?namespace=%00',
      ]),
    );
  });

  it('API keys: odd ids, queries and bodies', async () => {
    const requests = fc.oneof(
      oddParameter.filter((id) => id !== '' && !id.includes('/')).map((id): RawRequest => ({ method: 'DELETE', path: `/api/v1/admin/keys/${id}` })),
      query(['x', 'namespace', 'limit']).map((q): RawRequest => ({ method: 'GET', path: `/api/v1/admin/keys?${q}` })),
      // Never a valid scope: a created key would turn authentication on for the rest of the file.
      fc
        .record({
          scope: oddJson.filter((scope) => !['admin', 'nodes:read', 'nodes:write'].includes(scope as string)),
          namespace: fc.option(oddJson, { nil: undefined }),
          name: fc.option(oddJson, { nil: undefined }),
        })
        .map((body): RawRequest => ({ method: 'POST', path: '/api/v1/admin/keys', body: JSON.stringify(body) })),
      fc.record({ scope: fc.constant('admin'), name: unstorableText }).map((body): RawRequest => ({ method: 'POST', path: '/api/v1/admin/keys', body: JSON.stringify(body) })),
    );
    await assertAnswered(requests, 300, [
      { method: 'DELETE', path: '/api/v1/admin/keys/a%00b' },
      { method: 'DELETE', path: '/api/v1/admin/keys/%ED%A0%80' },
      { method: 'POST', path: '/api/v1/admin/keys', body: '{"scope":"admin","name":"ops\\u0000"}' },
    ]);
  });

  it('namespace policies and quotas: odd namespaces, versions and bodies', async () => {
    const namespace = fc.oneof(
      fc.constantFrom('fz-ns', 'default'),
      oddParameter.filter((ns) => ns !== '' && !ns.includes('/') && ns !== '..'),
    );
    const requests = fc.oneof(
      fc
        .tuple(namespace, fc.option(oddParameter, { nil: undefined }))
        .map(([ns, v]): RawRequest => ({ method: 'GET', path: `/api/v1/namespaces/${ns}/policy${v === undefined ? '' : `?version=${v}`}` })),
      namespace.map((ns): RawRequest => ({ method: 'GET', path: `/api/v1/namespaces/${ns}/policy/versions` })),
      namespace.map((ns): RawRequest => ({ method: 'GET', path: `/api/v1/namespaces/${ns}/quotas` })),
      fc
        .tuple(namespace, fc.oneof(oddJson, fc.constantFrom('true', 'node.node_type == "x"', '1/0 == 1', 'node.labels.exists(l, l == "x")')))
        .map(([ns, expression]): RawRequest => ({ method: 'PUT', path: `/api/v1/namespaces/${ns === 'default' ? 'fz-ns' : ns}/policy`, body: JSON.stringify({ expression }) })),
      fc
        .tuple(
          namespace,
          fc.record({
            max_nodes: fc.option(oddJson, { nil: undefined }),
            max_nodes_per_type: fc.option(fc.oneof(oddJson, fc.dictionary(fc.oneof(fc.string({ maxLength: 5 }), unstorableText), oddJson, { maxKeys: 2 })), { nil: undefined }),
          }),
        )
        .map(([ns, body]): RawRequest => ({ method: 'PUT', path: `/api/v1/namespaces/${ns === 'default' ? 'fz-ns' : ns}/quotas`, body: JSON.stringify(body) })),
    );
    await assertAnswered(requests, 400);
  });

  it('identity: odd tokens, revocations and requests', async () => {
    const requests = fc.oneof(
      fc
        .record({
          namespace: fc.option(oddJson, { nil: undefined }),
          node_type: fc.oneof(fc.constant('worker'), oddJson),
          ttl_seconds: fc.option(oddJson, { nil: undefined }),
          uses: fc.option(oddJson, { nil: undefined }),
        })
        .map((body): RawRequest => ({ method: 'POST', path: '/api/v1/identity/tokens', body: JSON.stringify(body) })),
      fc
        .record({
          serial: fc.option(fc.oneof(oddJson, fc.constantFrom('ff', 'F'.repeat(64), '0')), { nil: undefined }),
          spiffe_id: fc.option(oddJson, { nil: undefined }),
          reason: fc.option(oddJson, { nil: undefined }),
        })
        .map((body): RawRequest => ({ method: 'POST', path: '/api/v1/identity/revocations', body: JSON.stringify(body) })),
      fc
        .record({ token: oddJson, csr: oddJson, node_id: fc.oneof(fc.constant('fz-id'), oddJson) })
        .map((body): RawRequest => ({ method: 'POST', path: '/api/v1/identity/svid', body: JSON.stringify(body) })),
      fc
        .record({ certificate: oddJson, csr: oddJson, proof: fc.option(oddJson, { nil: undefined }) })
        .map((body): RawRequest => ({ method: 'POST', path: '/api/v1/identity/svid/renew', body: JSON.stringify(body) })),
      query(['x']).map((q): RawRequest => ({ method: 'GET', path: `/api/v1/identity/revocations?${q}` })),
    );
    await assertAnswered(requests, 300);
  });

  it('topology, node and profile reads with odd parameters', async () => {
    const id = oddParameter.filter((value) => value !== '' && !value.includes('/') && value !== '..').map((value) => `fzz-${value}`);
    const requests = fc.oneof(
      // Never a long wait: a well-formed request would otherwise block until its wait ends.
      query(['since', 'limit', 'namespace']).map((q): RawRequest => ({ method: 'GET', path: `/api/v1/topology/changes?${q.includes('since=') ? q : `since=0&${q}`}&wait=0s` })),
      query(['namespace']).map((q): RawRequest => ({ method: 'GET', path: `/api/v1/topology?${q}` })),
      query(['namespace', 'role', 'label', 'status', 'node_type', 'capability', 'version', 'limit', 'cursor']).map((q): RawRequest => ({ method: 'GET', path: `/api/v1/nodes?${q}` })),
      fc.tuple(id, query(['namespace'])).map(([nodeId, q]): RawRequest => ({ method: 'GET', path: `/api/v1/nodes/${nodeId}?${q}` })),
      fc.tuple(id, query(['namespace', 'reason', 'incarnation'])).map(([nodeId, q]): RawRequest => ({ method: 'DELETE', path: `/api/v1/nodes/${nodeId}?${q}` })),
      fc.tuple(id, query(['namespace'])).map(([role, q]): RawRequest => ({ method: 'GET', path: `/api/v1/profiles/${role}?${q}` })),
      query(['namespace', 'node_type', 'role', 'label']).map((q): RawRequest => ({ method: 'GET', path: `/api/v1/sd/prometheus?${q}` })),
    );
    await assertAnswered(requests, 400);
  });

  it('Consul reads and writes with odd parameters', async () => {
    const name = oddParameter.filter((value) => value !== '' && !value.includes('/') && value !== '..').map((value) => `fzz${value}`);
    const requests = fc.oneof(
      // Blocking queries wait 1 ms at most: a well-formed one would otherwise hold for minutes.
      fc.tuple(name, query(['index', 'ns', 'passing', 'filter', 'tag', 'dc'])).map(([service, q]): RawRequest => ({ method: 'GET', path: `/v1/health/service/${service}?${q}&wait=1ms` })),
      fc.tuple(name, query(['index', 'ns', 'tag', 'dc'])).map(([service, q]): RawRequest => ({ method: 'GET', path: `/v1/catalog/service/${service}?${q}&wait=1ms` })),
      query(['ns', 'filter', 'dc']).map((q): RawRequest => ({ method: 'GET', path: `/v1/agent/services?${q}` })),
      query(['index', 'ns', 'dc']).map((q): RawRequest => ({ method: 'GET', path: `/v1/catalog/services?${q}&wait=1ms` })),
      fc.tuple(name, query(['ns'])).map(([id, q]): RawRequest => ({ method: 'PUT', path: `/v1/agent/service/deregister/${id}?${q}` })),
      fc.tuple(fc.constantFrom('pass', 'warn', 'fail'), name, query(['note', 'ns'])).map(([action, id, q]): RawRequest => ({ method: 'PUT', path: `/v1/agent/check/${action}/${id}?${q}` })),
    );
    await assertAnswered(requests, 400);
  });

  it('answers /health afterwards', async (context) => {
    context.diagnostic(`${requests} requests in all; the last describe took ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assert.equal((await json(`${t.url}/health`)).status, 200);
  });
});
