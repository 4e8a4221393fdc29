// The embedded default as a user runs it: `rollcall serve --data-dir`, killed hard, restarted.
import { spawn, type ChildProcess } from 'node:child_process';
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

const children = new Set<ChildProcess>();
const dirs: string[] = [];
after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function serve(dataDir: string, port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['bin/rollcall.js', 'serve', '--data-dir', dataDir, '--port', String(port)], {
    env: { ...process.env, ROLLCALL_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) return child;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) throw new Error(`serve exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error('serve did not become healthy');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('embedded database', () => {
  it('keeps every acknowledged registration when the process is killed with SIGKILL', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rollcall-embedded-'));
    dirs.push(dir);
    const dataDir = join(dir, 'data');
    const port = await freePort();
    const first = await serve(dataDir, port);
    const url = `http://127.0.0.1:${port}`;
    const acknowledged: string[] = [];
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const response = await fetch(`${url}/api/v1/nodes/register`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ node_id: `embedded-${i}`, hostname: `h${i}`, role: 'embedded', labels: ['crash'] }),
        });
        if (response.status === 201) acknowledged.push(`embedded-${i}`);
      }),
    );
    assert.equal(acknowledged.length, 40);
    const exited = new Promise((resolve) => first.once('exit', resolve));
    first.kill('SIGKILL');
    await exited;

    await serve(dataDir, port);
    const listed = (await (await fetch(`${url}/api/v1/nodes?role=embedded&limit=1000`)).json()) as { nodes: Array<{ node_id: string; status: string }> };
    assert.deepEqual(listed.nodes.map((n) => n.node_id).sort(), acknowledged.sort());
    assert.ok(listed.nodes.every((n) => n.status === 'online'));
  });
});
