// The embedded default as a user runs it: `rollcall serve --data-dir`, killed hard, restarted.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { killAllCli, spawnCli, type CliProcess } from '../support/processes.js';

const dirs: string[] = [];
after(async () => {
  await killAllCli();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

/**
 * `rollcall serve` on the embedded database, once it says where it is serving. Port 0: the server
 * binds a free port itself. A port picked beforehand can be taken by another test's connection
 * while a loaded machine takes a minute to open the database.
 */
async function serve(dataDir: string): Promise<{ proc: CliProcess; url: string }> {
  const proc = spawnCli(['serve', '--data-dir', dataDir, '--port', '0']);
  const [, url] = await proc.waitForLine('stderr', /serving (http:\/\/\S+)/, 30_000);
  return { proc, url: url as string };
}

describe('embedded database', () => {
  it('keeps every acknowledged registration when the process is killed with SIGKILL', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rollcall-embedded-'));
    dirs.push(dir);
    const dataDir = join(dir, 'data');
    const { proc: first, url } = await serve(dataDir);
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

    const { url: again } = await serve(dataDir);
    const listed = (await (await fetch(`${again}/api/v1/nodes?role=embedded&limit=1000`)).json()) as { nodes: Array<{ node_id: string; status: string }> };
    assert.deepEqual(listed.nodes.map((n) => n.node_id).sort(), acknowledged.sort());
    assert.ok(listed.nodes.every((n) => n.status === 'online'));
  });
});
