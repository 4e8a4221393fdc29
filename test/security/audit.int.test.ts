// The audit log on real PostgreSQL: entries recorded through record() and by the registry, queried
// newest first with filters and cursor paging, and none lost across a clean stop.
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { AuditLog } from '../../src/security/audit.js';
import { openStore } from '../../src/store/open-store.js';
import { testLogger } from '../support/logger.js';
import { json, startTestServer, type TestServer } from '../support/server.js';
import type { StoredAuditEntry as Entry } from '../../src/store/store.js';

let t: TestServer;
before(async () => {
  // A long flush interval: only the query's own flush or the stop writes what was recorded.
  t = await startTestServer({ config: { auditFlushMs: 60_000 } });
});
after(async () => {
  await t.close();
});

async function page(query: string): Promise<{ entries: Entry[]; next_cursor: string | null }> {
  const response = await json<{ entries: Entry[]; next_cursor: string | null }>(`${t.url}/api/v1/audit?${query}`);
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body;
}

describe('audit log', () => {
  it('records registrations and deregistrations with who and why', async () => {
    const registered = await json(`${t.url}/api/v1/introspection`, { body: { namespace: 'aud', node_id: 'n1', node_type: 'effect', incarnation: 1 } });
    assert.equal(registered.status, 201);
    assert.equal((await json(`${t.url}/api/v1/nodes/n1?namespace=aud&reason=maintenance`, { method: 'DELETE' })).status, 200);
    const entries = (await page('namespace=aud')).entries;
    assert.deepEqual(
      entries.map((entry) => [entry.action, entry.node_id, entry.decision, entry.actor]),
      [
        ['node.deregister', 'n1', 'allowed', 'anonymous'],
        ['node.register', 'n1', 'allowed', 'anonymous'],
      ],
    );
    assert.equal(entries[0]?.reason, 'maintenance');
  });

  it('filters by action, decision and since, and pages newest first with a cursor', async () => {
    const audit = t.server.audit;
    for (let index = 0; index < 5; index += 1) {
      audit.record({ actor: `key-${index}`, action: 'auth.denied', namespace: 'aud-page', decision: 'denied', reason: 'unknown key' });
    }
    audit.record({ actor: 'key-9', action: 'auth.allowed', namespace: 'aud-page', decision: 'allowed' });
    const first = await page('namespace=aud-page&action=auth.denied&decision=denied&limit=2');
    assert.deepEqual(
      first.entries.map((entry) => entry.actor),
      ['key-4', 'key-3'],
    );
    assert.ok(first.next_cursor);
    const second = await page(`namespace=aud-page&action=auth.denied&decision=denied&limit=2&cursor=${first.next_cursor}`);
    assert.deepEqual(
      second.entries.map((entry) => entry.actor),
      ['key-2', 'key-1'],
    );
    const third = await page(`namespace=aud-page&action=auth.denied&decision=denied&limit=2&cursor=${second.next_cursor ?? ''}`);
    assert.deepEqual(
      third.entries.map((entry) => entry.actor),
      ['key-0'],
    );
    assert.equal(third.next_cursor, null);
    assert.equal((await page('namespace=aud-page&decision=allowed')).entries.length, 1);
    assert.equal((await page(`namespace=aud-page&since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).entries.length, 0);
    assert.equal((await page(`namespace=aud-page&since=${encodeURIComponent(new Date(Date.now() - 60_000).toISOString())}`)).entries.length, 6);
  });

  it('refuses bad filters with a problem document', async () => {
    for (const query of ['decision=maybe', 'since=yesterday', 'limit=0', 'cursor=%21%21', 'namespace=NOT_A_LABEL']) {
      const response = await json<{ code: string }>(`${t.url}/api/v1/audit?${query}`);
      assert.equal(response.status, 400, query);
      assert.equal(response.body.code, 'VALIDATION_FAILED', query);
    }
  });

  it('writes an entry carrying text the store cannot hold, replaced, and every entry after it', async () => {
    const audit = t.server.audit;
    audit.record({ actor: 'jwt:a\u0000b', action: 'auth.denied', namespace: 'aud-text', decision: 'denied', reason: 'bad \uD800', details: { ['k\uDC00']: ['\u0000'] } });
    audit.record({ actor: 'key-after', action: 'auth.denied', namespace: 'aud-text', decision: 'denied' });
    const entries = (await page('namespace=aud-text')).entries;
    assert.deepEqual(
      entries.map((entry) => entry.actor),
      ['key-after', 'jwt:a\uFFFDb'],
    );
    assert.equal(entries[1]?.reason, 'bad \uFFFD');
    assert.deepEqual(entries[1]?.details, { ['k\uFFFD']: ['\uFFFD'] });
  });

  it('writes an entry whose actor or node id is longer than its column, cut to fit, and every entry after it', async () => {
    const audit = t.server.audit;
    // A JWT subject, an API key name or a claimed node id of any length reaches the audit log as it came.
    const actor = `jwt:${'s'.repeat(1000)}`;
    const nodeId = `n${'\u{1F600}'.repeat(400)}`;
    audit.record({ actor, action: 'auth.denied', namespace: 'aud-long', node_id: nodeId, decision: 'denied', reason: 'unknown subject' });
    audit.record({ actor: 'x'.repeat(255), action: 'auth.denied', namespace: 'aud-long', decision: 'denied' });
    audit.record({ actor: 'key-after-long', action: 'auth.denied', namespace: 'aud-long', decision: 'denied' });
    const entries = (await page('namespace=aud-long')).entries;
    assert.deepEqual(
      entries.map((entry) => entry.actor),
      ['key-after-long', 'x'.repeat(255), `${actor.slice(0, 254)}\u2026`],
    );
    // Cut by characters, as the column counts them: no emoji is split in half.
    assert.equal(entries[2]?.node_id, `n${'\u{1F600}'.repeat(253)}\u2026`);
    assert.deepEqual(entries[2]?.details, { truncated: { actor: 1004, node_id: 401 } });
  });

  it('writes every recorded denial before a clean stop', async () => {
    assert.ok(t.database, 'this test restarts on the same PostgreSQL database');
    const denied = await json(`${t.url}/api/v1/namespaces/aud-stop/quotas`, { method: 'PUT', body: { max_nodes: 0 } });
    assert.equal(denied.status, 200);
    const refused = await json<{ code: string }>(`${t.url}/api/v1/introspection`, { body: { namespace: 'aud-stop', node_id: 'late', node_type: 'effect' } });
    assert.equal(refused.body.code, 'QUOTA_EXCEEDED');
    await t.stop();
    t = await startTestServer({ database: t.database, config: { auditFlushMs: 60_000 } });
    const entries = (await page('namespace=aud-stop&decision=denied')).entries;
    assert.equal(entries.length, 1);
    assert.equal(entries[0]?.node_id, 'late');
  });
});

describe('coalesced audit entries', () => {
  it('writes a flood of one refusal as its first entry plus one summary per window, losing no count', async () => {
    const store = await openStore({ kind: 'pglite', dataDir: undefined });
    await store.migrate();
    let nowMs = Date.parse('2026-01-01T00:00:00Z');
    const audit = new AuditLog({ store, logger: testLogger, flushMs: 60_000, coalesceMs: 60_000, now: () => nowMs });
    try {
      const refusal = (actor: string): void =>
        audit.record({ actor, action: 'auth.denied', decision: 'denied', reason: 'rate_limited', details: { route: '/api/v1/nodes' }, coalesceKey: `rate_limited:${actor}` });
      for (let i = 0; i < 500; i++) {
        refusal('key-a');
        nowMs += 10; // 500 refusals over 5 s
      }
      refusal('key-b');
      nowMs += 60_000; // the window ends: its summary is written at the next flush
      refusal('key-a'); // opens a new window
      await audit.flush();
      const entries = (await audit.query({ limit: 100 })).entries;
      const ofA = entries.filter((entry) => entry.actor === 'key-a').reverse();
      assert.equal(ofA.length, 3, JSON.stringify(ofA));
      assert.equal(ofA[0]?.details.repeated, undefined, 'the first refusal as it happened');
      assert.equal(ofA[1]?.details.repeated, 499, 'the rest of the first window counted');
      assert.equal(ofA[1]?.details.first_at, '2026-01-01T00:00:00.000Z');
      assert.equal(ofA[1]?.details.last_at, '2026-01-01T00:00:04.990Z');
      assert.equal(ofA[1]?.details.route, '/api/v1/nodes');
      assert.equal(entries.filter((entry) => entry.actor === 'key-b').length, 1, 'a lone refusal has no summary');
      // A stop writes the summaries of windows still open.
      refusal('key-a');
      refusal('key-a');
      await audit.stop();
      const after = (await audit.query({ limit: 100 })).entries.filter((entry) => entry.actor === 'key-a');
      assert.equal(after.length, 4);
      assert.equal(after[0]?.details.repeated, 2);
    } finally {
      await store.close();
    }
  });
});
