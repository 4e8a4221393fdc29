// A real Prometheus (Debian's build, `scripts/test-tools ensure`) on loopback with a temporary config
// and data folder, read through its own /api/v1/targets; stopped and removed by close().
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, pollUntil } from './processes.js';

export const PROMETHEUS = '/usr/bin/prometheus';

/** One entry of Prometheus' active targets. */
export interface ActiveTarget {
  scrapePool: string;
  scrapeUrl: string;
  labels: Record<string, string>;
  discoveredLabels: Record<string, string>;
}

export class TestPrometheus {
  private log = '';

  private constructor(
    readonly url: string,
    private readonly dir: string,
    private readonly child: ChildProcess,
  ) {
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.log = (this.log + chunk).slice(-20_000)));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.log = (this.log + chunk).slice(-20_000)));
  }

  /** Starts Prometheus with `config` (prometheus.yml text) and waits until it is ready. */
  static async start(config: string): Promise<TestPrometheus> {
    const dir = mkdtempSync(join(tmpdir(), 'rollcall-prometheus-'));
    const port = await freePort();
    writeFileSync(join(dir, 'prometheus.yml'), config);
    const child = spawn(PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const prometheus = new TestPrometheus(`http://127.0.0.1:${port}`, dir, child);
    try {
      await pollUntil(
        async () => {
          if (child.exitCode !== null) throw new Error(`prometheus exited (${String(child.exitCode)}):\n${prometheus.log}`);
          return fetch(`${prometheus.url}/-/ready`)
            .then((response) => response.status)
            .catch(() => 0);
        },
        (status) => status === 200,
        { timeoutMs: 20_000, intervalMs: 200, what: 'prometheus to be ready' },
      );
    } catch (error) {
      await prometheus.close();
      throw error;
    }
    return prometheus;
  }

  async activeTargets(pool?: string): Promise<ActiveTarget[]> {
    const response = await fetch(`${this.url}/api/v1/targets?state=active`);
    const body = (await response.json()) as { status: string; data: { activeTargets: ActiveTarget[] } };
    if (body.status !== 'success') throw new Error(`prometheus /api/v1/targets answered ${JSON.stringify(body)}`);
    return pool === undefined ? body.data.activeTargets : body.data.activeTargets.filter((target) => target.scrapePool === pool);
  }

  async close(): Promise<void> {
    const child = this.child;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
