// `rollcall demo` stopped with Ctrl-C at any moment ends cleanly: its nodes leave with a tombstone.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { freePort, killAllCli, spawnCli } from '../support/processes.js';

const dirs: string[] = [];
after(async () => {
  await killAllCli();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

it('Ctrl-C while the fleet is still registering stops the demo and removes the nodes it registered', { timeout: 300_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rollcall-demo-'));
  dirs.push(dir);
  const server = spawnCli(['serve', '--data-dir', join(dir, 'data'), '--port', String(await freePort())]);
  const url = (await server.waitForLine('stderr', /serving (http:\/\/\S+)/, 120_000))[1] as string;

  const demo = spawnCli(['demo', '--nodes', '200'], { env: { ROLLCALL_URL: url } });
  await demo.waitForLine('stdout', /registering 200 simulated nodes/, 30_000);
  demo.kill('SIGINT');
  assert.deepEqual(await demo.waitForExit(60_000), { code: 0, signal: null }, demo.stdout + demo.stderr);
  assert.match(demo.stdout, /stopping: \d+ nodes leave with a tombstone/);
  // The tombstones were acknowledged before the demo exited.
  const online = (await (await fetch(`${url}/api/v1/nodes?namespace=demo&status=online`)).json()) as { count: number };
  assert.equal(online.count, 0);
});
