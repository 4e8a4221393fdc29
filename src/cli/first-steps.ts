// What `rollcall serve` says once it serves: where the API and its OpenAPI document are, and the first
// commands to try; a short block for people on a terminal, one log line with the same fields otherwise.
import { basename, isAbsolute, relative } from 'node:path';
import type { Logger } from 'pino';
import { DEFAULT_URL } from './api-access.js';

export interface FirstSteps {
  url: string;
  api: string;
  openapi: string;
  health: string;
  /** Shell commands that answer at once against this registry. */
  try: string[];
}

/** How a person runs the CLI that is running now: `node bin/rollcall.js` from a checkout, else `rollcall`. */
export function cliCommand(script: string | undefined = process.argv[1], cwd: string = process.cwd()): string {
  if (script === undefined || basename(script) !== 'rollcall.js') return 'rollcall';
  // Relative from inside the checkout (`node bin/rollcall.js`), else the whole path.
  const inside = relative(cwd, script);
  const path = inside.startsWith('..') || isAbsolute(inside) ? script : inside;
  return `node ${/[^\w./-]/.test(path) ? JSON.stringify(path) : path}`;
}

export function firstSteps(url: string, cli: string = cliCommand()): FirstSteps {
  // ROLLCALL_URL rather than a flag: every command that talks to a registry reads it.
  const cliPrefix = url === DEFAULT_URL ? cli : `ROLLCALL_URL=${url} ${cli}`;
  return {
    url,
    api: `${url}/api/v1/nodes`,
    openapi: `${url}/openapi.json`,
    health: `${url}/health`,
    try: [`curl -s ${url}/api/v1/nodes`, `${cliPrefix} nodes`, `${cliPrefix} demo --nodes 20`],
  };
}

/** The block printed under the `serving` line on a terminal. */
export function renderFirstSteps(steps: FirstSteps): string {
  const [first, ...others] = steps.try;
  return (
    [
      '',
      `  API      ${steps.api}`,
      `  OpenAPI  ${steps.openapi}`,
      `  Health   ${steps.health}`,
      `  Try      ${first ?? ''}`,
      ...others.map((command) => `           ${command}`),
      '  Ctrl-C stops it.',
      '',
    ].join('\n') + '\n'
  );
}

/** Tells where to start: the block on standard error when logs are for people, else one info log line. */
export function announceFirstSteps(url: string, format: 'json' | 'pretty', logger: Logger): void {
  const steps = firstSteps(url);
  if (format === 'pretty') process.stderr.write(renderFirstSteps(steps));
  else logger.info(steps, 'where to start');
}
