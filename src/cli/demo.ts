// `rollcall demo`: a simulated fleet that joins, heartbeats, changes, crashes and leaves, narrated.
import { randomUUID } from 'node:crypto';
import { RollcallClient } from '../client/rollcall-client.js';
import { isRollcallError } from '../domain/errors.js';
import type { IntrospectionPayload } from '../domain/node.js';

export interface DemoOptions {
  registryUrl: string;
  /** API key (scope nodes:write in namespace demo, or wider), once the registry requires one. */
  apiKey?: string;
  nodes: number;
  intervalSeconds: number;
  durationSeconds?: number;
}

const TYPES = ['orchestrator', 'reducer', 'compute', 'effect'] as const;

interface SimNode {
  payload: IntrospectionPayload;
  alive: boolean;
}

function say(line: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 19)}  ${line}\n`);
}

function makeNode(index: number, ttlSeconds: number): SimNode {
  const nodeType = TYPES[index % TYPES.length] as (typeof TYPES)[number];
  const id = `demo-${nodeType}-${randomUUID().slice(0, 8)}`;
  return {
    alive: true,
    payload: {
      node_id: id,
      node_name: `Demo ${nodeType} ${index}`,
      node_type: nodeType,
      node_version: `1.${index % 3}.0`,
      namespace: 'demo',
      incarnation: Date.now(),
      lease_ttl_seconds: ttlSeconds,
      capabilities: {
        supported_operations: [`${nodeType}_work`],
        max_concurrent_workflows: 10 + (index % 5) * 10,
        gpu: index % 4 === 0,
      },
      endpoints: { health: `http://${id}.demo.local:8080/health`, api: `http://${id}.demo.local:8080` },
      current_state: { status: 'active', health_status: 'healthy' },
      metadata: { role: nodeType, labels: ['demo', index % 2 === 0 ? 'zone-a' : 'zone-b'] },
      reason: 'startup',
    },
  };
}

export async function runDemo(options: DemoOptions): Promise<void> {
  const client = new RollcallClient(options.registryUrl, options.apiKey === undefined ? {} : { apiKey: options.apiKey });
  try {
    await client.health();
  } catch (error) {
    const detail = isRollcallError(error) ? error.message : String(error);
    throw new Error(`${detail}\nStart a registry first, e.g. \`rollcall serve\`, or pass --url.`);
  }
  const ttlSeconds = Math.max(3, options.intervalSeconds * 3);
  const fleet: SimNode[] = [];
  let next = 0;
  const join = async (): Promise<SimNode> => {
    const node = makeNode(next++, ttlSeconds);
    await client.introspect(node.payload);
    fleet.push(node);
    return node;
  };
  // Heard from the start: a Ctrl-C at any moment ends the demo with its tombstones, never the bare process.
  let interrupted = false;
  const interruption = new Promise<void>((resolve) => {
    const stop = (): void => {
      interrupted = true;
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  say(`registering ${options.nodes} simulated nodes in namespace "demo" at ${options.registryUrl}`);
  for (let i = 0; i < options.nodes && !interrupted; i += 1) await join();
  const start = await client.topology('demo');
  say(
    `fleet up: ${start.count} nodes online, topology version ${start.version}. Watch: curl -N${options.apiKey === undefined ? '' : ' -H "Authorization: Bearer $ROLLCALL_API_KEY"'} '${options.registryUrl}/api/v1/topology/stream?namespace=demo'`,
  );

  let stopped = false;
  const heartbeats = setInterval(() => {
    for (const node of fleet.filter((n) => n.alive)) {
      client.heartbeat({ node_id: node.payload.node_id, namespace: 'demo', incarnation: node.payload.incarnation }).catch(() => undefined);
    }
  }, options.intervalSeconds * 1000);

  const events = [
    async () => {
      const node = await join();
      say(`+ ${node.payload.node_id} joined`);
    },
    async () => {
      const node = fleet.find((n) => n.alive);
      if (!node) return;
      const capabilities = node.payload.capabilities as Record<string, number>;
      capabilities.max_concurrent_workflows = (capabilities.max_concurrent_workflows ?? 0) + 10;
      node.payload.reason = 'capability_change';
      await client.introspect(node.payload);
      say(`~ ${node.payload.node_id} raised max_concurrent_workflows to ${capabilities.max_concurrent_workflows}`);
    },
    async () => {
      const node = fleet.find((n) => n.alive);
      if (!node) return;
      node.alive = false;
      say(`x ${node.payload.node_id} crashed (no more heartbeats; its ${ttlSeconds}s lease will lapse)`);
    },
    async () => {
      const index = fleet.findIndex((n) => n.alive);
      const node = fleet[index];
      if (!node) return;
      fleet.splice(index, 1);
      await client.deregister(node.payload.node_id, { namespace: 'demo', reason: 'graceful_shutdown' });
      say(`- ${node.payload.node_id} left gracefully`);
    },
  ];
  let tick = 0;
  const narrator = setInterval(
    () => {
      tick += 1;
      const event = events[tick % events.length];
      event?.()
        .then(() => client.listNodes({ namespace: 'demo', status: ['online'], limit: 1000 }))
        .then((page) => say(`  ${page.count} online in "demo", topology version ${page.topology_version}`))
        .catch((error: unknown) => say(`! ${(error as Error).message}`));
    },
    Math.max(2000, options.intervalSeconds * 1000),
  );

  const finish = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    clearInterval(heartbeats);
    clearInterval(narrator);
    const leaving = fleet.filter((n) => n.alive);
    say(`stopping: ${leaving.length} nodes leave with a tombstone`);
    await Promise.all(leaving.map((n) => client.deregister(n.payload.node_id, { namespace: 'demo', reason: 'graceful_shutdown' }).catch(() => undefined)));
  };
  await new Promise<void>((resolve) => {
    const done = (): void => {
      finish().then(resolve, resolve);
    };
    void interruption.then(done);
    if (options.durationSeconds) setTimeout(done, options.durationSeconds * 1000);
  });
}
