// `rollcall key create|list|revoke`: API keys on the store `serve` uses, so the first admin key exists
// before the registry is ever reachable; through the API of the server that has the embedded folder
// open (or of --url), so a running server knows every key at once.
import { Command, Option } from 'commander';
import { RollcallError } from '../domain/errors.js';
import { ALL_NAMESPACES, API_KEY_SCOPES, createApiKey, presentApiKey, type ApiKeyRecord, type ApiKeyScope } from '../security/api-keys.js';
import { callApi } from './api-access.js';
import { withStoreOrServer, withStoreOptions, type StoreOptions } from './store-access.js';
import { renderTable } from './table.js';

type PresentedKey = Omit<ApiKeyRecord, 'secret_hash'>;

export function keyCommand(): Command {
  const key = new Command('key').description('Manage API keys (on the store; through the API of a server that has the embedded folder open, or of --url)');

  withStoreOptions(
    key
      .command('create')
      .description('Create an API key; it is printed once and stored only as a hash')
      .addOption(new Option('--scope <scope>', 'what the key may do').choices(API_KEY_SCOPES).makeOptionMandatory())
      .requiredOption('--namespace <namespace>', `namespace the key may act in, or ${ALL_NAMESPACES} for every namespace`)
      .option('--name <name>', 'a name to recognise the key by')
      .option('--json', 'print JSON for scripts'),
  ).action(async (options: StoreOptions & { scope: ApiKeyScope; namespace: string; name?: string; json?: boolean }) => {
    const created = await withStoreOrServer('key create', options, {
      store: async (store) => {
        const made = await createApiKey(store, { scope: options.scope, namespace: options.namespace, name: options.name });
        return { ...presentApiKey(made.record), key: made.token };
      },
      api: (server) =>
        callApi<PresentedKey & { key: string }>(server, 'POST', '/api/v1/admin/keys', {
          scope: options.scope,
          namespace: options.namespace,
          ...(options.name !== undefined ? { name: options.name } : {}),
        }),
    });
    if (options.json) {
      process.stdout.write(`${JSON.stringify(created, null, 2)}\n`);
      return;
    }
    process.stdout.write(`${created.key}\n`);
    process.stderr.write(`API key ${created.id} (${created.scope}, namespace ${created.namespace}) created. It is shown only now: keep it somewhere safe.\n`);
  });

  withStoreOptions(key.command('list').description('List API keys (never their secrets)').option('--json', 'print JSON for scripts')).action(async (options: StoreOptions & { json?: boolean }) => {
    const keys = await withStoreOrServer('key list', options, {
      store: async (store) => (await store.listApiKeys()).map(presentApiKey),
      api: async (server) => (await callApi<{ keys: PresentedKey[] }>(server, 'GET', '/api/v1/admin/keys')).keys,
    });
    if (options.json) {
      process.stdout.write(`${JSON.stringify(keys, null, 2)}\n`);
      return;
    }
    process.stdout.write(
      renderTable(
        ['ID', 'NAME', 'SCOPE', 'NAMESPACE', 'CREATED', 'REVOKED'],
        keys.map((k) => [k.id, k.name ?? '', k.scope, k.namespace, k.created_at, k.revoked_at ?? '-']),
      ),
    );
  });

  withStoreOptions(key.command('revoke <id>').description('Revoke an API key (registries notice within seconds)')).action(async (id: string, options: StoreOptions) => {
    await withStoreOrServer('key revoke', options, {
      store: async (store) => {
        const revoked = await store.revokeApiKey(id, Date.now());
        if (!revoked) throw new RollcallError('API_KEY_NOT_FOUND', `No API key ${id}.`, { details: { id } });
        return presentApiKey(revoked);
      },
      api: (server) => callApi<PresentedKey>(server, 'DELETE', `/api/v1/admin/keys/${encodeURIComponent(id)}`),
    });
    process.stdout.write(`${id}: revoked\n`);
  });
  return key;
}
