// The process logger: structured JSON (pino), secrets redacted by configuration.
import pino, { type Logger } from 'pino';

/** Field names whose values never reach a log line. */
export const SENSITIVE_KEYS = ['password', 'token', 'secret', 'api_key', 'apiKey', 'private_key', 'authorization', 'cookie', 'jwt', 'databaseUrl', 'consulToken'] as const;

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const paths = SENSITIVE_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);
  paths.push('req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]', '*["x-consul-token"]', '*.*["x-consul-token"]');
  return pino({ level, base: { service: 'rollcall' }, redact: { paths, censor: '[redacted]' } }, destination);
}
