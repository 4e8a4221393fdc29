// How CLI commands reach a registry's API: `--url` (env ROLLCALL_URL) and `--api-key` (env
// ROLLCALL_API_KEY) on every command that talks to a server, and one call that turns the
// registry's problem answers into RollcallErrors by code.
import { Option, type Command } from 'commander';
import { requestJson } from '../client/rollcall-client.js';

export const DEFAULT_URL = 'http://127.0.0.1:9205';

export interface ServerOptions {
  url?: string;
  /** The old name of --url, still accepted. */
  registryUrl?: string;
  apiKey?: string;
}

/** A registry's API and the credential to send it. */
export interface ServerAccess {
  url: string;
  apiKey?: string;
}

/** Adds --url and --api-key (and the hidden old name --registry-url). */
export function withServerOptions(command: Command, urlHelp = `registry to talk to (env: ROLLCALL_URL, default: ${DEFAULT_URL})`): Command {
  return command
    .option('--url <url>', urlHelp)
    .addOption(new Option('--registry-url <url>', 'old name of --url').hideHelp())
    .addOption(new Option('--api-key <key>', 'API key sent as a bearer token, once the registry requires one').env('ROLLCALL_API_KEY'));
}

/** The URL given by --url (or --registry-url), else ROLLCALL_URL; undefined when none is. */
export function namedUrl(options: ServerOptions): string | undefined {
  return options.url ?? options.registryUrl ?? (process.env.ROLLCALL_URL || undefined);
}

export function serverOf(options: ServerOptions): ServerAccess {
  return { url: namedUrl(options) ?? DEFAULT_URL, ...(options.apiKey ? { apiKey: options.apiKey } : {}) };
}

/** One JSON request; a refusal becomes a RollcallError with the registry's code and detail (as the client SDK's). */
export function callApi<T>(server: ServerAccess, method: string, path: string, body?: unknown): Promise<T> {
  return requestJson<T>(server.url.replace(/\/+$/, ''), method, path, {
    headers: server.apiKey ? { authorization: `Bearer ${server.apiKey}` } : {},
    body,
    timeoutMs: 10_000,
  });
}
