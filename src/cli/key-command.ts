// `rollcall key create|list|revoke`: API keys written straight to the store `serve` uses, so the first
// admin key exists before the registry is ever reachable.
import { Command, Option } from 'commander';
import { RollcallError } from '../domain/errors.js';
import { ALL_NAMESPACES, API_KEY_SCOPES, createApiKey, presentApiKey, type ApiKeyScope } from '../security/api-keys.js';
import { withStore, withStoreOptions, type StoreOptions } from './store-access.js';
import { renderTable } from './table.js';




export function keyCommand(): Command {
  const key = new Command('key').description('Manage API keys (written directly to the store; a running PostgreSQL-backed server need not stop)');

  withStoreOptions(
    key
      .command('create')
      .description('Create an API key; it is printed once and stored only as a hash')
      .addOption(new Option('--scope <scope>', 'what the key may do').choices(API_KEY_SCOPES).makeOptionMandatory())
      .requiredOption('--namespace <namespace>', `namespace the key may act in, or ${ALL_NAMESPACES} for every namespace`)
      .option('--name <name>', 'a name to recognise the key by')
      .option('--json', 'print JSON for scripts'),
  ).action(async (options: StoreOptions & { scope: ApiKeyScope; namespace: string; name?: string; json?: boolean }) => {
    const created = await withStore(options, (store) => createApiKey(store, { scope: options.scope, namespace: options.namespace, name: options.name }));
    if (options.json) {
      process.stdout.write(`${JSON.stringify({ ...presentApiKey(created.record), key: created.token }, null, 2)}\n`);
      return;
    }
    process.stdout.write(`${created.token}\n`);
    process.stderr.write(`API key ${created.record.id} (${created.record.scope}, namespace ${created.record.namespace}) created. It is shown only now: keep it somewhere safe.\n`);
  });

  withStoreOptions(key.command('list').description('List API keys (never their secrets)').option('--json', 'print JSON for scripts')).action(
    async (options: StoreOptions & { json?: boolean }) => {
      const keys = await withStore(options, (store) => store.listApiKeys());
      if (options.json) {
        process.stdout.write(`${JSON.stringify(keys.map(presentApiKey), null, 2)}\n`);
        return;
      }
      process.stdout.write(renderTable(['ID', 'NAME', 'SCOPE', 'NAMESPACE', 'CREATED', 'REVOKED'], keys.map((k) => [k.id, k.name ?? '', k.scope, k.namespace, k.created_at, k.revoked_at ?? '-'])));
    },
  );

  withStoreOptions(key.command('revoke <id>').description('Revoke an API key (registries notice within seconds)')).action(async (id: string, options: StoreOptions) => {
    const revoked = await withStore(options, (store) => store.revokeApiKey(id, Date.now()));
    if (!revoked) throw new RollcallError('API_KEY_NOT_FOUND', `No API key ${id}.`, { details: { id } });
    process.stdout.write(`${id}: revoked\n`);
  });
  return key;
}
