// Topology readers: the snapshot with its version, long-poll for changes, and a Server-Sent Events stream.
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { RollcallError } from '../../domain/errors.js';
import type { TopologyChange } from '../../domain/node.js';
import type { Registry } from '../../engine/registry.js';
import { problemOf } from '../problem.js';
import * as params from '../query-params.js';
import { presentNode } from './node-routes.js';

const PAGE = 1000;
const SSE_KEEPALIVE_MS = 15_000;

const ChangesQuery = Type.Object(
  {
    since: Type.String({ pattern: '^\\d{1,16}$', description: 'Return changes after this topology version.' }),
    wait: Type.Optional(Type.String({ description: 'Long-poll up to this long for a change: 30s, 500ms, 2m (max 5m).' })),
    namespace: Type.Optional(Type.String()),
    limit: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
const StreamQuery = Type.Object(
  { since: Type.Optional(Type.String({ pattern: '^\\d{1,16}$' })), namespace: Type.Optional(Type.String()) },
  { additionalProperties: false },
);

function presentChange(change: TopologyChange): TopologyChange {
  return { ...change, node: presentNode(change.node) };
}

export function topologyRoutes(app: FastifyInstance, registry: Registry): void {
  // Shutdown ends long-polls and streams at once instead of waiting out their timers.
  const shutdown = new AbortController();
  app.addHook('preClose', (done) => {
    shutdown.abort();
    done();
  });
  /** A reader ahead of the registry (its database was replaced) must resync, like one too far behind. */
  const assertKnown = (since: number): void => {
    if (since > registry.view.version) {
      throw new RollcallError('VERSION_GONE', `Topology version ${since} is ahead of this registry (${registry.view.version}); resync from the snapshot.`, {
        details: { since, current: registry.view.version },
      });
    }
  };

  app.get('/api/v1/topology', {
    schema: { tags: ['topology'], summary: 'Snapshot of the online nodes with the topology version it reflects.', querystring: Type.Object({ namespace: Type.Optional(Type.String()) }, { additionalProperties: false }) },
  }, async (request) => {
    const namespace = params.namespace(request.query as params.Query);
    const version = registry.view.version;
    const page = registry.list({ ...(namespace === undefined ? {} : { namespace }), status: ['online'], limit: Number.MAX_SAFE_INTEGER });
    return { version, count: page.nodes.length, nodes: page.nodes.map(presentNode) };
  });

  app.get('/api/v1/topology/changes', {
    schema: { tags: ['topology'], summary: 'Changes after a version; waits up to `wait` for one. 410 when the version is no longer retained.', querystring: ChangesQuery },
  }, async (request) => {
    const query = request.query as params.Query;
    const since = Number(params.single(query, 'since'));
    const waitMs = params.duration(query, 'wait', { maxMs: 300_000, fallbackMs: 0 });
    const namespace = params.namespace(query);
    const limit = params.integer(query, 'limit', { min: 1, max: 10_000, fallback: PAGE });
    assertKnown(since);
    const deadline = Date.now() + waitMs;
    const closed = new AbortController();
    request.raw.once('close', () => closed.abort());
    shutdown.signal.addEventListener('abort', () => closed.abort(), { once: true });
    let covered = since;
    for (;;) {
      const changes = await registry.changesSince(covered, limit);
      const last = changes[changes.length - 1];
      if (last) covered = last.version;
      const matching = namespace === undefined ? changes : changes.filter((change) => change.namespace === namespace);
      const remaining = deadline - Date.now();
      if (matching.length > 0 || remaining <= 0 || closed.signal.aborted) {
        return { version: Math.max(covered, since), changes: matching.map(presentChange) };
      }
      if (changes.length === 0) await registry.view.waitPast(covered, remaining, closed.signal);
    }
  });

  app.get('/api/v1/topology/stream', {
    schema: { tags: ['topology'], summary: 'Server-Sent Events: every change after `since` (or Last-Event-ID), then live ones.', querystring: StreamQuery },
  }, async (request, reply) => {
    const query = request.query as params.Query;
    const namespace = params.namespace(query);
    const lastEventId = request.headers['last-event-id'];
    const sinceText = params.single(query, 'since') ?? (typeof lastEventId === 'string' && /^\d{1,16}$/.test(lastEventId) ? lastEventId : undefined);
    let sent = sinceText === undefined ? registry.view.version : Number(sinceText);
    assertKnown(sent);
    // Fail with a problem document before the stream starts, not inside it.
    let backlog = await registry.changesSince(sent, PAGE);

    reply.hijack();
    const out = reply.raw;
    out.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    out.write(`retry: 2000\nevent: ready\ndata: ${JSON.stringify({ version: registry.view.version, since: sent })}\n\n`);

    let closed = false;
    let pumping = false;
    let again = false;
    const write = (change: TopologyChange): void => {
      sent = change.version;
      if (namespace !== undefined && change.namespace !== namespace) return;
      out.write(`id: ${change.version}\nevent: change\ndata: ${JSON.stringify(presentChange(change))}\n\n`);
    };
    const pump = async (): Promise<void> => {
      if (pumping) {
        again = true;
        return;
      }
      pumping = true;
      try {
        do {
          again = false;
          while (!closed && sent < registry.view.version) {
            const changes = backlog.length > 0 ? backlog : await registry.changesSince(sent, PAGE);
            backlog = [];
            if (changes.length === 0) break;
            changes.forEach(write);
          }
        } while (again && !closed);
      } catch (error) {
        const problem = error instanceof RollcallError ? problemOf(error, request.url) : null;
        if (problem) out.write(`event: error\ndata: ${JSON.stringify(problem)}\n\n`);
        out.end();
      } finally {
        pumping = false;
      }
    };
    backlog.forEach(write);
    backlog = [];
    const unsubscribe = registry.view.onVersion(() => void pump());
    const keepalive = setInterval(() => out.write(`: keepalive ${registry.view.version}\n\n`), SSE_KEEPALIVE_MS);
    const finish = (): void => {
      if (closed) return;
      closed = true;
      unsubscribe();
      clearInterval(keepalive);
      shutdown.signal.removeEventListener('abort', end);
    };
    const end = (): void => {
      finish();
      out.end();
    };
    request.raw.once('close', finish);
    shutdown.signal.addEventListener('abort', end, { once: true });
    void pump();
  });

}
