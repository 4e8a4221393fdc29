// Topology readers: the snapshot with its version, long-poll for changes, and a Server-Sent Events stream.
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { LRUCache } from 'lru-cache';
import client from 'prom-client';
import { RollcallError } from '../../domain/errors.js';
import type { TopologyChange } from '../../domain/node.js';
import type { Registry } from '../../engine/registry.js';
import { metricOnce, type MetricsRegistry } from '../../metrics.js';
import { problemOf } from '../problem.js';
import * as params from '../query-params.js';
import { presentNode } from './node-routes.js';

const PAGE = 1000;
const SSE_KEEPALIVE_MS = 15_000;
/** Serialised change events shared by every stream, by version: readers at the head serialise each change once. */
const FRAME_CACHE_BYTES = 8 * 1024 * 1024;
const WATCHER_KINDS = ['long_poll', 'stream'] as const;
type WatcherKind = (typeof WATCHER_KINDS)[number];

export interface TopologyRouteOptions {
  /** The server's metrics registry, handed in by the composition root. */
  metrics: MetricsRegistry;
  /** An event stream whose reader is this many bytes behind is closed (sseMaxBufferBytes); default 4 MiB. */
  sseMaxBufferBytes?: number;
}

const ChangesQuery = Type.Object(
  {
    since: Type.String({ pattern: '^\\d{1,16}$', description: 'Return changes after this topology version.' }),
    wait: Type.Optional(Type.String({ description: 'Long-poll up to this long for a change: 30s, 500ms, 2m (max 5m).' })),
    namespace: Type.Optional(Type.String()),
    limit: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
const StreamQuery = Type.Object({ since: Type.Optional(Type.String({ pattern: '^\\d{1,16}$' })), namespace: Type.Optional(Type.String()) }, { additionalProperties: false });

function presentChange(change: TopologyChange): TopologyChange {
  return { ...change, node: presentNode(change.node) };
}

export function topologyRoutes(app: FastifyInstance, registry: Registry, options: TopologyRouteOptions): void {
  const maxBufferBytes = options.sseMaxBufferBytes ?? 4 * 1024 * 1024;
  const registers = [options.metrics];
  const watcherGauge = metricOnce(
    options.metrics,
    'rollcall_topology_watchers',
    () =>
      new client.Gauge({
        name: 'rollcall_topology_watchers',
        help: 'Open topology watchers, by kind: long_poll (GET /api/v1/topology/changes waiting) or stream (Server-Sent Events).',
        labelNames: ['kind'],
        registers,
      }),
  );
  const droppedStreams = metricOnce(
    options.metrics,
    'rollcall_sse_streams_dropped_total',
    () =>
      new client.Counter({
        name: 'rollcall_sse_streams_dropped_total',
        help: 'Topology event streams closed by the registry, by reason: slow_reader (fell sseMaxBufferBytes behind; the client resumes with Last-Event-ID).',
        labelNames: ['reason'],
        registers,
      }),
  );
  for (const kind of WATCHER_KINDS) watcherGauge.set({ kind }, 0);
  const frames = new LRUCache<number, { text: string; bytes: number }>({ maxSize: FRAME_CACHE_BYTES, sizeCalculation: (frame) => frame.bytes });
  const frameOf = (change: TopologyChange): { text: string; bytes: number } => {
    let frame = frames.get(change.version);
    if (frame === undefined) {
      const text = `id: ${change.version}\nevent: change\ndata: ${JSON.stringify(presentChange(change))}\n\n`;
      frame = { text, bytes: Buffer.byteLength(text) };
      frames.set(change.version, frame);
    }
    return frame;
  };
  // A replaced view may number other changes with the same versions.
  const forgetFrames = registry.view.onChange((change) => {
    if (change === null) frames.clear();
  });
  app.addHook('onClose', (_instance, done) => {
    forgetFrames();
    done();
  });

  // Each open watcher's way to end now; shutdown ends them all at once instead of waiting out their
  // timers. A watcher takes itself off when it ends, whatever ends it: nothing outlives an answer.
  const watchers = new Set<() => void>();
  let closing = false;
  const watch = (kind: WatcherKind, end: () => void): (() => void) => {
    watchers.add(end);
    watcherGauge.inc({ kind });
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      watchers.delete(end);
      watcherGauge.dec({ kind });
    };
  };
  app.addHook('preClose', (done) => {
    closing = true;
    for (const end of [...watchers]) end();
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

  app.get(
    '/api/v1/topology',
    {
      schema: {
        tags: ['topology'],
        summary: 'Snapshot of the online nodes with the topology version it reflects.',
        querystring: Type.Object({ namespace: Type.Optional(Type.String()) }, { additionalProperties: false }),
      },
    },
    async (request) => {
      const namespace = params.namespace(request.query as params.Query);
      const version = registry.view.version;
      const page = registry.list({ ...(namespace === undefined ? {} : { namespace }), status: ['online'], limit: Number.MAX_SAFE_INTEGER });
      return { version, count: page.nodes.length, nodes: page.nodes.map(presentNode) };
    },
  );

  app.get(
    '/api/v1/topology/changes',
    {
      schema: { tags: ['topology'], summary: 'Changes after a version; waits up to `wait` for one. 410 when the version is no longer retained.', querystring: ChangesQuery },
    },
    async (request) => {
      const query = request.query as params.Query;
      const since = Number(params.single(query, 'since'));
      const waitMs = params.duration(query, 'wait', { maxMs: 300_000, fallbackMs: 0 });
      const namespace = params.namespace(query);
      const limit = params.integer(query, 'limit', { min: 1, max: 10_000, fallback: PAGE });
      assertKnown(since);
      const deadline = Date.now() + waitMs;
      const closed = new AbortController();
      const end = (): void => closed.abort();
      const unwatch = watch('long_poll', end);
      request.raw.once('close', end);
      if (closing) end();
      try {
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
      } finally {
        request.raw.off('close', end);
        unwatch();
      }
    },
  );

  app.get(
    '/api/v1/topology/stream',
    {
      schema: { tags: ['topology'], summary: 'Server-Sent Events: every change after `since` (or Last-Event-ID), then live ones.', querystring: StreamQuery },
    },
    async (request, reply) => {
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

      // Backpressure: once the socket's buffer is full nothing more is written until it drains; the
      // changes meanwhile stay in the registry, and a drain resumes from the last one written. While
      // blocked, the bytes of the changes committed since are counted (not kept): past
      // sseMaxBufferBytes, buffer included, the reader has stopped taking events and the stream is
      // closed; it resumes by Last-Event-ID. A backlog that was there already (a reader catching up)
      // does not count: only a reader that takes nothing while the topology moves on is dropped.
      let blocked = false;
      /** While blocked: the version through which missed bytes are counted, and their sum. */
      let counted = sent;
      let owed = 0;
      /** Moves on each drain: a page read before it is read again from the new position. */
      let rewinds = 0;
      let closed = false;
      let pumping = false;
      let again = false;
      const send = (text: string): void => {
        if (out.write(text)) return;
        blocked = true;
        counted = Math.max(sent, registry.view.version);
        owed = 0;
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
            while (!closed) {
              const from = blocked ? counted : sent;
              if (from >= registry.view.version) break;
              const generation = rewinds;
              const changes = backlog.length > 0 ? backlog : await registry.changesSince(from, PAGE);
              backlog = [];
              if (changes.length === 0) break;
              for (const change of changes) {
                if (closed || rewinds !== generation) break;
                const matches = namespace === undefined || change.namespace === namespace;
                if (blocked) {
                  if (change.version <= counted) continue;
                  counted = change.version;
                  if (matches) owed += frameOf(change).bytes;
                  if (owed + out.writableLength > maxBufferBytes) {
                    drop('slow_reader');
                    break;
                  }
                } else {
                  if (change.version <= sent) continue;
                  sent = change.version;
                  if (matches) send(frameOf(change).text);
                }
              }
            }
          } while (again && !closed);
        } catch (error) {
          const problem = error instanceof RollcallError ? problemOf(error, request.url) : null;
          if (!closed && problem) out.write(`event: error\ndata: ${JSON.stringify(problem)}\n\n`);
          end();
        } finally {
          pumping = false;
        }
      };
      const unsubscribe = registry.view.onVersion(() => void pump());
      const keepalive = setInterval(() => {
        if (!blocked) send(`: keepalive ${registry.view.version}\n\n`);
      }, SSE_KEEPALIVE_MS);
      const onDrain = (): void => {
        if (!blocked || closed) return;
        blocked = false;
        owed = 0;
        rewinds += 1;
        void pump();
      };
      const finish = (): void => {
        if (closed) return;
        closed = true;
        unsubscribe();
        clearInterval(keepalive);
        out.off('drain', onDrain);
        unwatch();
      };
      const end = (): void => {
        finish();
        out.end();
      };
      const drop = (reason: 'slow_reader'): void => {
        droppedStreams.inc({ reason });
        app.log.info({ reason, behind_bytes: owed + out.writableLength, last_event_id: sent }, 'topology stream dropped');
        finish();
        // Its buffer goes with it: the reader never took it.
        out.destroy();
      };
      const unwatch = watch('stream', end);
      out.on('drain', onDrain);
      out.once('close', finish);
      send(`retry: 2000\nevent: ready\ndata: ${JSON.stringify({ version: registry.view.version, since: sent })}\n\n`);
      if (closing) end();
      else void pump();
    },
  );
}
