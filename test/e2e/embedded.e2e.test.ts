// The embedded default as a user runs it: `rollcall serve --data-dir`, killed hard, restarted.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { freePort, killAllCli, spawnCli, type CliProcess } from '../support/processes.js';

const dirs: string[] = [];
after(async () => {
  await killAllCli();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** `rollcall serve` on the embedded database, once it says it is serving. */
async function serve(dataDir: string, port: number): Promise<CliProcess> {
  const proc = spawnCli(['serve', '--data-dir', dataDir, '--port', String(port)]);
  await proc.waitForLine('stderr', /serving http:\/\//, 30_000);
  return proc;
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
    first.kill('SIGKILL');
    assert.equal((await first.waitForExit()).signal, 'SIGKILL');

    await serve(dataDir, port);
    const listed = (await (await fetch(`${url}/api/v1/nodes?role=embedded&limit=1000`)).json()) as { nodes: Array<{ node_id: string; status: string }> };
    assert.deepEqual(listed.nodes.map((n) => n.node_id).sort(), acknowledged.sort());
    assert.ok(listed.nodes.every((n) => n.status === 'online'));
  });
});
