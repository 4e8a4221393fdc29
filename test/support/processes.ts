// Runs the built `rollcall` binary as child processes for end-to-end tests: collects output, waits for
// a line or for exit, and kills whatever is still running at cleanup so no process outlives the tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = fileURLToPath(new URL('../../bin/rollcall.js', import.meta.url));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface CliProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly args: readonly string[];
  readonly stdout: string;
  readonly stderr: string;
  /** Set once the process has exited. */
  readonly exit: Exit | null;
  /** Resolves with the first match of `pattern` in a complete line of `stream`. */
  waitForLine(stream: 'stdout' | 'stderr', pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves when the process exits; rejects (leaving it running) after `timeoutMs`. */
  waitForExit(timeoutMs?: number): Promise<Exit>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * A wait for a condition ends as soon as the condition holds, so a generous bound costs nothing when
 * things work. Tests name the time a condition takes on a quiet machine; a wait gives up only after
 * TEST_PATIENCE (default 4) times that, so a busy machine slows a test down instead of failing it.
 */
export const PATIENCE = Math.max(1, Number(process.env.TEST_PATIENCE ?? 4));
/** The bound of a wait that names none. */
export const PATIENCE_MS = 15_000 * PATIENCE;
const patient = (timeoutMs: number): number => timeoutMs * PATIENCE;

const running = new Set<CliProcess>();

/** The environment of a child: ours without rollcall's own settings, plus `env`. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (/^(ROLLCALL_|POSTGRES_)/.test(name) || name === 'DATABASE_URL' || name === 'NODE_OPTIONS' || name === 'NODE_TEST_CONTEXT') continue;
    base[name] = value;
  }
  return { ...base, ROLLCALL_LOG_LEVEL: 'warn', ...env };
}

function describeProcess(proc: { args: readonly string[]; stdout: string; stderr: string; exit: Exit | null }): string {
  const tail = (text: string): string => (text.length > 2000 ? `…${text.slice(-2000)}` : text);
  const state = proc.exit ? `exited (code ${proc.exit.code}, signal ${proc.exit.signal})` : 'still running';
  return `rollcall ${proc.args.join(' ')}: ${state}\n--- stdout\n${tail(proc.stdout)}\n--- stderr\n${tail(proc.stderr)}`;
}

export function spawnCli(args: string[], options: { env?: Record<string, string> } = {}): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: REPO_ROOT,
    env: childEnv(options.env ?? {}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`could not start rollcall ${args.join(' ')}`);
  const output = { stdout: '', stderr: '' };
  let exit: Exit | null = null;
  const listeners = new Set<() => void>();
  const notify = (): void => {
    for (const listener of [...listeners]) listener();
  };
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    output.stdout += chunk;
    notify();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    output.stderr += chunk;
    notify();
  });
  // 'close' comes after the output streams ended, so everything printed has been read.
  child.on('close', (code, signal) => {
    exit = { code, signal };
    running.delete(proc);
    notify();
  });

  const waitUntil = <T>(check: () => T | undefined, what: string, timeoutMs: number): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const listener = (): void => {
        let value: T | undefined;
        try {
          value = check();
        } catch (error) {
          done();
          reject(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        if (value !== undefined) {
          done();
          resolve(value);
        } else if (exit) {
          done();
          reject(new Error(`gave up waiting for ${what}: ${describeProcess(proc)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${describeProcess(proc)}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        listeners.delete(listener);
      };
      listeners.add(listener);
      listener();
    });

  const proc: CliProcess = {
    child,
    pid: child.pid,
    args,
    get stdout() {
      return output.stdout;
    },
    get stderr() {
      return output.stderr;
    },
    get exit() {
      return exit;
    },
    waitForLine(stream, pattern, timeoutMs) {
      return waitUntil(
        () => {
          // Only complete lines: a line still being written could match a prefix.
          const text = output[stream];
          const complete = text.slice(0, text.lastIndexOf('\n') + 1);
          for (const line of complete.split('\n')) {
            const match = pattern.exec(line);
            if (match) return match;
          }
          return undefined;
        },
        `${stream} line ${String(pattern)}`,
        timeoutMs === undefined ? PATIENCE_MS : patient(timeoutMs),
      );
    },
    waitForExit(timeoutMs) {
      return waitUntil<Exit>(() => exit ?? undefined, 'exit', timeoutMs === undefined ? PATIENCE_MS : patient(timeoutMs));
    },
    kill(signal = 'SIGTERM') {
      if (!exit) child.kill(signal);
    },
  };
  running.add(proc);
  return proc;
}

/** Runs a command to completion; rejects if it is still running after `timeoutMs`. */
export async function runCli(
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const proc = spawnCli(args, options.env ? { env: options.env } : {});
  const exit = await proc.waitForExit(options.timeoutMs);
  return { ...exit, stdout: proc.stdout, stderr: proc.stderr };
}

/** SIGKILLs every child still running and waits for each to exit. */
export async function killAllCli(): Promise<void> {
  const left = [...running];
  for (const proc of left) proc.kill('SIGKILL');
  await Promise.all(left.map((proc) => proc.waitForExit(5_000).catch(() => undefined)));
}

/** A TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}

/** Polls `probe` until `done` accepts its value; the error names the last value seen. */
export async function pollUntil<T>(probe: () => Promise<T>, done: (value: T) => boolean, options: { timeoutMs: number; intervalMs?: number; what: string }): Promise<T> {
  const timeoutMs = patient(options.timeoutMs);
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await probe();
    if (done(last)) return last;
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${options.what}; last seen: ${JSON.stringify(last)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 100));
  }
}

/** Polls `probe` until it returns a value other than undefined, and returns that value. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  return (await pollUntil(probe, (value) => value !== undefined, { what, timeoutMs })) as T;
}
