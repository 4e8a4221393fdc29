// `rollcall policy set|get|versions` and `rollcall quota set|get`: namespace administration through
// the registry's API, so the registry validates, versions and audits every change.
import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError } from 'commander';
import { callApi, serverOf, withServerOptions, type ServerOptions } from './api-access.js';
import { renderTable } from './table.js';

type ApiOptions = ServerOptions;

function withApiOptions(command: Command): Command {
  return withServerOptions(command);
}

function call<T>(options: ApiOptions, method: string, path: string, body?: unknown): Promise<T> {
  return callApi<T>(serverOf(options), method, path, body);
}

function nonNegativeInteger(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('must be a whole number');
  return Number(value);
}

/** `type=n` pairs, repeatable. */
function typeLimit(value: string, previous: Record<string, number> = {}): Record<string, number> {
  const match = /^([A-Za-z0-9][A-Za-z0-9._-]*)=(\d+)$/.exec(value);
  if (!match) throw new InvalidArgumentError('must be node_type=count, e.g. orchestrator=10');
  return { ...previous, [match[1] as string]: Number(match[2]) };
}

interface PolicyVersion {
  namespace: string;
  version: number;
  expression: string;
  created_by: string;
  created_at: string;
}

export function policyCommand(): Command {
  const policy = new Command('policy').description("Manage a namespace's admission policy (CEL over node, identity and ns)");

  withApiOptions(
    policy
      .command('set <namespace>')
      .description('Save a new policy version from a file (validated by the registry first)')
      .requiredOption('--file <file>', 'file holding the CEL expression; - reads stdin'),
  ).action(async (namespace: string, options: ApiOptions & { file: string }) => {
    const expression = options.file === '-' ? await readStdin() : await readFile(options.file, 'utf8');
    const saved = await call<PolicyVersion>(options, 'PUT', `/api/v1/namespaces/${encodeURIComponent(namespace)}/policy`, { expression: expression.trim() });
    process.stdout.write(`policy of ${saved.namespace}: version ${saved.version}\n`);
  });

  withApiOptions(
    policy
      .command('get <namespace>')
      .description("Print the namespace's current policy (or one version)")
      .option('--version <n>', 'a past version', nonNegativeInteger)
      .option('--json', 'print JSON for scripts'),
  ).action(async (namespace: string, options: ApiOptions & { version?: number; json?: boolean }) => {
    const query = options.version === undefined ? '' : `?version=${options.version}`;
    const current = await call<PolicyVersion>(options, 'GET', `/api/v1/namespaces/${encodeURIComponent(namespace)}/policy${query}`);
    if (options.json) {
      process.stdout.write(`${JSON.stringify(current, null, 2)}\n`);
      return;
    }
    process.stderr.write(`# ${current.namespace} version ${current.version}, by ${current.created_by} at ${current.created_at}\n`);
    process.stdout.write(`${current.expression}\n`);
  });

  withApiOptions(policy.command('versions <namespace>').description("List the namespace's policy versions")).action(async (namespace: string, options: ApiOptions) => {
    const listed = await call<{ versions: PolicyVersion[] }>(options, 'GET', `/api/v1/namespaces/${encodeURIComponent(namespace)}/policy/versions`);
    process.stdout.write(
      renderTable(
        ['VERSION', 'CREATED_BY', 'CREATED_AT', 'EXPRESSION'],
        listed.versions.map((item) => [String(item.version), item.created_by, item.created_at, item.expression.replace(/\s+/g, ' ').slice(0, 60)]),
      ),
    );
  });
  return policy;
}

export function quotaCommand(): Command {
  const quota = new Command('quota').description("Manage a namespace's node quotas");

  withApiOptions(
    quota
      .command('set <namespace>')
      .description('Set the quotas (replacing the previous ones)')
      .option('--max-nodes <n>', 'nodes the namespace may hold (online or offline)', nonNegativeInteger)
      .option('--type <type=n>', 'nodes of one node_type, repeatable', typeLimit),
  ).action(async (namespace: string, options: ApiOptions & { maxNodes?: number; type?: Record<string, number> }) => {
    await call(options, 'PUT', `/api/v1/namespaces/${encodeURIComponent(namespace)}/quotas`, { max_nodes: options.maxNodes ?? null, max_nodes_per_type: options.type ?? {} });
    process.stdout.write(`quotas of ${namespace} saved\n`);
  });

  withApiOptions(quota.command('get <namespace>').description("Print the namespace's quotas")).action(async (namespace: string, options: ApiOptions) => {
    const quotas = await call<Record<string, unknown>>(options, 'GET', `/api/v1/namespaces/${encodeURIComponent(namespace)}/quotas`);
    process.stdout.write(`${JSON.stringify(quotas, null, 2)}\n`);
  });
  return quota;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
