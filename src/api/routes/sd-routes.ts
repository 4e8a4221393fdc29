// Prometheus HTTP service discovery: every online node that publishes a scrape target, as one target
// group, in the format of Prometheus' http_sd_configs.
//
// Labels. Everything rollcall knows about a node is a `__meta_rollcall_*` label: Prometheus offers
// those to relabeling and then drops them, so the scrape config decides what becomes a target label
// (as with consul_sd_configs' `__meta_consul_*`). The only other labels are Prometheus' reserved
// `__scheme__`, `__metrics_path__` and `__param_<name>`, taken from the node's `metrics` URL. No plain
// labels are set: they would be attached to every series without the operator asking for them.
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { hostPort, scrapeTarget } from '../../domain/node-address.js';
import type { NodeRecord } from '../../domain/node.js';
import type { Registry } from '../../engine/registry.js';
import * as params from '../query-params.js';

export interface SdRouteOptions {
  registry: Registry;
}

export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

const META = '__meta_rollcall_';
/** Nodes read per page of the live view. */
const PAGE = 1000;

const SdQuery = Type.Object(
  {
    namespace: Type.Optional(Type.String({ description: 'Namespace to discover (default, or *: every namespace; `__meta_rollcall_namespace` tells them apart).' })),
    node_type: Type.Optional(Type.String({ maxLength: 100 })),
    role: Type.Optional(Type.String({ maxLength: 100 })),
    label: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())], { description: 'Labels every node must carry (repeatable, comma separated).' })),
  },
  { additionalProperties: false },
);

/** A metadata key as a label-name suffix: Prometheus label names are [a-zA-Z_][a-zA-Z0-9_]*. */
function labelSuffix(key: string): string {
  return key.replace(/[^a-zA-Z0-9_]/g, '_');
}

/** One target group for a node, or null when it publishes nothing to scrape. */
export function targetGroupOf(node: NodeRecord): TargetGroup | null {
  const target = scrapeTarget(node);
  if (target === null) return null;
  const labels: Record<string, string> = {
    [`${META}namespace`]: node.namespace,
    [`${META}node_id`]: node.node_id,
    [`${META}node_type`]: node.node_type,
    [`${META}version`]: node.node_version,
    [`${META}role`]: node.role ?? '',
    // Leading and trailing separators, as consul_sd's tags: `.*,gpu,.*` matches one label exactly.
    [`${META}labels`]: node.labels.length > 0 ? `,${node.labels.join(',')},` : '',
    [`${META}node_name`]: node.node_name ?? '',
    [`${META}hostname`]: node.hostname ?? '',
    [`${META}ip`]: node.ip ?? '',
    [`${META}health_status`]: node.health_status,
    [`${META}target_source`]: target.source,
  };
  for (const [key, value] of Object.entries(node.metadata)) {
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') labels[`${META}metadata_${labelSuffix(key)}`] = String(value);
  }
  if (target.scheme === 'http' || target.scheme === 'https') labels.__scheme__ = target.scheme;
  if (target.metricsPath !== null) labels.__metrics_path__ = target.metricsPath;
  for (const [name, value] of Object.entries(target.params)) labels[`__param_${name}`] = value;
  return { targets: [hostPort(target)], labels };
}

export function sdRoutes(app: FastifyInstance, options: SdRouteOptions): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { registry } = options;

  api.get(
    '/api/v1/sd/prometheus',
    {
      schema: {
        tags: ['discovery'],
        summary: 'Prometheus HTTP service discovery: one target group per online node with a scrape target.',
        description:
          "Targets come from the node's `metrics` URL (host:port, `__scheme__`, `__metrics_path__`, `__param_*`), else its declared `service` address (a Consul registration's Address:Port), else its `health`, `api`, `http`, `https` or `url` URL, else ip/hostname with a `metrics_port` or `port` field. " +
          'Labels: `__meta_rollcall_{namespace,node_id,node_type,version,role,labels,node_name,hostname,ip,health_status,target_source}` and `__meta_rollcall_metadata_<key>`; `__meta_rollcall_labels` is comma-joined with a leading and trailing comma.',
        querystring: SdQuery,
      },
    },
    async (request, reply) => {
      const query = request.query as params.Query;
      const filter = {
        namespace: params.single(query, 'namespace') === '*' ? undefined : params.namespace(query),
        node_type: params.single(query, 'node_type'),
        role: params.single(query, 'role'),
        labels: params.list(query, 'label'),
      };
      const defined = Object.fromEntries(Object.entries(filter).filter(([, value]) => value !== undefined)) as Partial<typeof filter>;
      const groups: TargetGroup[] = [];
      let after: string | undefined;
      do {
        const page = registry.list({ ...defined, status: ['online'], limit: PAGE, ...(after === undefined ? {} : { after }) });
        for (const node of page.nodes) {
          const group = targetGroupOf(node);
          if (group) groups.push(group);
        }
        after = page.next ?? undefined;
      } while (after !== undefined);
      return reply.header('content-type', 'application/json; charset=utf-8').send(groups);
    },
  );
}
