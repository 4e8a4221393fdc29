// The process logger (pino), secrets redacted by configuration: JSON lines for machines, or lines for
// people (pino-pretty) when standard output is a terminal.
import pino, { type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';

/** Field names whose values never reach a log line. */
export const SENSITIVE_KEYS = ['password', 'token', 'secret', 'api_key', 'apiKey', 'private_key', 'authorization', 'cookie', 'jwt', 'databaseUrl', 'consulToken'] as const;

/** `auto` is `pretty` when standard output is a terminal and `json` otherwise. */
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** The format `auto` stands for on `output` (standard output by default). */
export function resolveLogFormat(format: LogFormat, output: { isTTY?: boolean } = process.stdout): 'json' | 'pretty' {
  if (format !== 'auto') return format;
  return output.isTTY === true ? 'pretty' : 'json';
}

/** Log lines for people, written synchronously so the last lines before an exit are not lost. */
function prettyDestination(): pino.DestinationStream {
  const prettify = prettyFactory({ translateTime: 'SYS:HH:MM:ss.l', ignore: 'service', singleLine: true });
  const stdout = pino.destination({ dest: 1, sync: true });
  return { write: (line: string) => stdout.write(prettify(line)) };
}

/**
 * A logger at `level`. JSON lines go to `destination` (standard output by default); `format` `pretty`
 * (or `auto` on a terminal) writes readable lines to standard output instead.
 */
export function createLogger(level: string, destination?: pino.DestinationStream, format: LogFormat = 'json'): Logger {
  const paths = SENSITIVE_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);
  paths.push('req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]', '*["x-consul-token"]', '*.*["x-consul-token"]');
  const options = { level, base: { service: 'rollcall' }, redact: { paths, censor: '[redacted]' } };
  if (destination === undefined && resolveLogFormat(format) === 'pretty') return pino(options, prettyDestination());
  return pino(options, destination);
}
