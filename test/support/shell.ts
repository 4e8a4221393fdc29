// Runs command lines as a person types them into bash, with `rollcall` on the PATH (the built binary, as
// when installed as a package). bash runs a line of one command in its own place (exec), so a signal
// to the line reaches the command itself, as Ctrl-C would; lines stay in the test's process group, so
// whoever ends the test's group ends them too.
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, REPO_ROOT, type Exit } from './processes.js';

export interface ShellLine {
  readonly command: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly exit: Exit | null;
  /** Resolves with the first match of `pattern` in stdout; rejects when the line exits first or after `timeoutMs`. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  waitForExit(timeoutMs?: number): Promise<Exit>;
  /** Signals the line's command, as a terminal does on Ctrl-C (SIGINT). */
  signal(signal: NodeJS.Signals): void;
}

export interface Shell {
  /** Starts `command` with `env` added to the environment. */
  start(command: string, env?: Record<string, string>): ShellLine;
  /** Runs `command` to its end; rejects if it runs longer than `timeoutMs`. */
  run(command: string, options?: { env?: Record<string, string>; timeoutMs?: number }): Promise<ShellLine>;
  /** SIGKILLs every group still running and removes the shell's folder. */
  close(): Promise<void>;
}

/** Our environment without rollcall's own settings, so the README's defaults apply. */
function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (/^(ROLLCALL_|POSTGRES_)/.test(name) || name === 'DATABASE_URL' || name === 'NODE_OPTIONS' || name === 'NODE_TEST_CONTEXT') continue;
    env[name] = value;
  }
  return env;
}

export async function createShell(): Promise<Shell> {
  const binDir = await mkdtemp(join(tmpdir(), 'rollcall-shell-'));
  const shim = join(binDir, 'rollcall');
  await writeFile(shim, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} "$@"\n`);
  await chmod(shim, 0o755);
  const lines = new Set<ShellLine>();

  const start = (command: string, env: Record<string, string> = {}): ShellLine => {
    const base = baseEnv();
    const child = spawn('bash', ['-c', command], {
      cwd: REPO_ROOT,
      env: { ...base, ...env, PATH: `${binDir}:${base.PATH ?? ''}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (child.pid === undefined) throw new Error(`could not start bash for: ${command}`);
    const output = { stdout: '', stderr: '' };
    let exit: Exit | null = null;
    const listeners = new Set<() => void>();
    const notify = (): void => [...listeners].forEach((listener) => listener());
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => ((output.stdout += chunk), notify()));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => ((output.stderr += chunk), notify()));
    child.on('close', (code, signal) => {
      exit = { code, signal };
      notify();
    });
    const describe = (): string => `$ ${command}\n${exit ? `exited ${JSON.stringify(exit)}` : 'still running'}\n--- stdout\n${output.stdout.slice(-3000)}\n--- stderr\n${output.stderr.slice(-3000)}`;
    const waitUntil = <T>(check: () => T | undefined, what: string, timeoutMs: number): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(listener);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}:\n${describe()}`));
        }, timeoutMs);
        const listener = (): void => {
          const value = check();
          if (value === undefined && !exit) return;
          clearTimeout(timer);
          listeners.delete(listener);
          if (value !== undefined) resolve(value);
          else reject(new Error(`gave up waiting for ${what}:\n${describe()}`));
        };
        listeners.add(listener);
        listener();
      });
    const line: ShellLine = {
      command,
      get stdout() {
        return output.stdout;
      },
      get stderr() {
        return output.stderr;
      },
      get exit() {
        return exit;
      },
      waitForOutput: (pattern, timeoutMs = 30_000) => waitUntil(() => pattern.exec(output.stdout) ?? undefined, `output ${String(pattern)}`, timeoutMs),
      waitForExit: (timeoutMs = 30_000) => waitUntil<Exit>(() => exit ?? undefined, 'exit', timeoutMs),
      signal(signal) {
        if (!exit) child.kill(signal);
      },
    };
    lines.add(line);
    return line;
  };

  return {
    start,
    async run(command, options = {}) {
      const line = start(command, options.env);
      await line.waitForExit(options.timeoutMs ?? 30_000);
      return line;
    },
    async close() {
      const running = [...lines].filter((line) => !line.exit);
      for (const line of running) line.signal('SIGKILL');
      await Promise.all(running.map((line) => line.waitForExit(5_000).catch(() => undefined)));
      await rm(binDir, { recursive: true, force: true });
    },
  };
}
