// `rollcall ca init|revoke` and `rollcall token create`: the built-in CA's files, and join tokens and
// revocations written to the store `serve` uses, or through the API of the server that has the
// embedded folder open (or of --url).
import { dirname, join, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { initCaFiles } from '../security/ca.js';
import { revokeCertificate } from '../security/identity-service.js';
import { createJoinToken, parseDurationSeconds, type CreatedJoinToken } from '../security/join-tokens.js';
import type { CertificateRevocation } from '../store/store.js';
import { callApi } from './api-access.js';
import { configOf, withStoreOrServer, withStoreOptions, type StoreOptions } from './store-access.js';

/** The CA folder when --dir is not given: `ca` next to the data folder (.rollcall/ca by default). */
export function defaultCaDir(dataDir: string): string {
  return dataDir.startsWith('memory://') ? join('.rollcall', 'ca') : join(dirname(resolve(dataDir)), 'ca');
}

function duration(value: string): number {
  const seconds = parseDurationSeconds(value);
  if (seconds === null) throw new InvalidArgumentError('must be a duration such as 90s, 15m, 1h or 7d');
  return seconds;
}

function count(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new InvalidArgumentError('must be a positive integer');
  return number;
}

export function caCommand(): Command {
  const ca = new Command('ca').description('The built-in certificate authority that issues node identities (SPIFFE X.509 SVIDs)');

  ca.command('init')
    .description('Create a root CA (ECDSA P-256, 10 years) for a trust domain; refuses to overwrite one')
    .requiredOption('--trust-domain <domain>', 'SPIFFE trust domain, e.g. omninode.network (env ROLLCALL_TRUST_DOMAIN)')
    .option('--dir <folder>', 'where to write ca.pem and ca.key (default: `ca` next to the data folder, .rollcall/ca)')
    .option('--data-dir <dir>', 'data folder the default CA folder sits next to (env ROLLCALL_DATA_DIR)')
    .option('--config <file>', 'JSON config file (env ROLLCALL_CONFIG)')
    .action(async (options: StoreOptions & { trustDomain: string; dir?: string }) => {
      const dir = options.dir ?? defaultCaDir(configOf(options).dataDir);
      const created = await initCaFiles(dir, options.trustDomain);
      process.stdout.write(`ROLLCALL_TRUST_DOMAIN=${created.ca.trustDomain}\nROLLCALL_CA_CERT_FILE=${resolve(created.certFile)}\nROLLCALL_CA_KEY_FILE=${resolve(created.keyFile)}\n`);
      process.stderr.write(`Root CA for spiffe://${created.ca.trustDomain} written to ${dir} (key mode 0600). Serve with the variables above to turn on the identity API.\n`);
    });

  withStoreOptions(
    ca
      .command('revoke')
      .description('Revoke certificates by serial or by SPIFFE ID (every certificate of that ID issued so far)')
      .option('--serial <hex>', 'serial number of one certificate')
      .option('--spiffe-id <id>', 'spiffe://<trust-domain>/node/<node_type>/<node_id>')
      .option('--reason <reason>', 'why', 'unspecified')
      .option('--json', 'print JSON for scripts'),
  ).action(async (options: StoreOptions & { serial?: string; spiffeId?: string; reason: string; json?: boolean }) => {
    const revocation = await withStoreOrServer('ca revoke', options, {
      store: (store) =>
        revokeCertificate(store, {
          ...(options.serial !== undefined ? { serial: options.serial } : {}),
          ...(options.spiffeId !== undefined ? { spiffeId: options.spiffeId } : {}),
          reason: options.reason,
        }),
      api: (server) =>
        callApi<CertificateRevocation>(server, 'POST', '/api/v1/identity/revocations', {
          ...(options.serial !== undefined ? { serial: options.serial } : {}),
          ...(options.spiffeId !== undefined ? { spiffe_id: options.spiffeId } : {}),
          reason: options.reason,
        }),
    });
    if (options.json) {
      process.stdout.write(`${JSON.stringify(revocation, null, 2)}\n`);
      return;
    }
    process.stdout.write(`revoked ${revocation.serial ?? revocation.spiffe_id ?? ''} at ${revocation.revoked_at}\n`);
  });
  return ca;
}

export function tokenCommand(): Command {
  const token = new Command('token').description('Join tokens: one-time secrets a node exchanges with a CSR for its SVID');

  withStoreOptions(
    token
      .command('create')
      .description('Create a join token; it is printed once and stored only as a hash')
      .requiredOption('--namespace <namespace>', 'namespace the node joins')
      .requiredOption('--node-type <type>', 'node_type the token allows')
      .option('--ttl <duration>', 'how long the token may be used, e.g. 15m, 1h', duration, 3600)
      .option('--uses <count>', 'how many SVIDs it may be exchanged for', count, 1)
      .option('--json', 'print JSON for scripts'),
  ).action(async (options: StoreOptions & { namespace: string; nodeType: string; ttl: number; uses: number; json?: boolean }) => {
    const created = await withStoreOrServer('token create', options, {
      store: (store) => createJoinToken(store, { namespace: options.namespace, nodeType: options.nodeType, ttlSeconds: options.ttl, uses: options.uses }),
      api: (server) =>
        callApi<CreatedJoinToken>(server, 'POST', '/api/v1/identity/tokens', { namespace: options.namespace, node_type: options.nodeType, ttl_seconds: options.ttl, uses: options.uses }),
    });
    if (options.json) {
      process.stdout.write(`${JSON.stringify(created, null, 2)}\n`);
      return;
    }
    process.stdout.write(`${created.token}\n`);
    process.stderr.write(`Join token ${created.id} for node_type ${created.node_type} in ${created.namespace}, ${created.uses} use(s), until ${created.expires_at}. It is shown only now.\n`);
  });
  return token;
}
