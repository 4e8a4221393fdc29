// The README's examples, run as written (curl and `rollcall` lines through bash) against a real
// `rollcall serve` on the embedded database: each must return what the README says it does, so the
// README cannot drift from the code. Only the address changes (a free port instead of 9205).
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort, killAllCli, REPO_ROOT, spawnCli } from '../support/processes.js';
import { createShell, type Shell } from '../support/shell.js';

const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const README_URL = 'http://127.0.0.1:9205';
const WAIT_MS = 60_000;

/** The fenced bash blocks of the README section headed `## title`. */
function bashBlocks(title: string): string[] {
  const start = README.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `README.md has no section "## ${title}"`);
  const end = README.indexOf('\n## ', start + 1);
  const section = README.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```bash\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');
}

/** A command goes on while it ends with a backslash or has a quote still open. */
function unfinished(command: string): boolean {
  return command.endsWith('\\') || (command.split("'").length - 1) % 2 === 1;
}

/** The commands of a block, each with the lines that continue it; comment lines are left out. */
function commandsOf(block: string): string[] {
  const commands: string[] = [];
  for (const line of block.split('\n')) {
    const last = commands.at(-1);
    if (last !== undefined && unfinished(last)) commands[commands.length - 1] = `${last}\n${line}`;
    else if (line.trim() !== '' && !line.trimStart().startsWith('#')) commands.push(line);
  }
  for (const command of commands) assert.match(command, /^(curl|rollcall) /, `this test runs curl and rollcall lines; teach it this README line:\n${command}`);
  return commands;
}

/** A one-line command without its trailing `# comment`. */
function withoutComment(command: string): string {
  return command.replace(/\s+#[^'"]*$/, '');
}

interface ApiNode {
  node_id: string;
  status: string;
  role: string | null;
  labels: string[];
  removal_reason: string | null;
}

describe('README examples', () => {
  let shell: Shell;
  let url: string;
  let dir: string;
  /** node_ids of the nodes the README's own examples registered. */
  const readmeNodes: string[] = [];

  before(
    async () => {
      dir = await mkdtemp(join(tmpdir(), 'rollcall-readme-'));
      shell = await createShell();
      const port = await freePort();
      const server = spawnCli(['serve', '--data-dir', join(dir, 'data'), '--port', String(port)]);
      url = (await server.waitForLine('stderr', /serving (http:\/\/\S+)/, 120_000))[1] as string;
    },
    { timeout: 180_000 },
  );
  after(async () => {
    await shell.close();
    await killAllCli();
    await rm(dir, { recursive: true, force: true });
  });

  const getNode = async (nodeId: string): Promise<ApiNode> => {
    const response = await fetch(`${url}/api/v1/nodes/${encodeURIComponent(nodeId)}`);
    assert.equal(response.status, 200, `GET node ${nodeId}: ${response.status}`);
    return (await response.json()) as ApiNode;
  };

  it('"Try it": every curl example answers as its comment says', { timeout: 300_000 }, async () => {
    const [block] = bashBlocks('Try it');
    assert.ok(block, 'no bash block in "Try it"');
    const commands = commandsOf(block).map((command) => command.replaceAll(README_URL, url));
    assert.ok(commands.length >= 4, `too few examples found:\n${commands.join('\n')}`);
    for (const command of commands) {
      if (command.includes('/topology/stream')) {
        // A watch runs until Ctrl-C: it must show every node the examples registered, then stop on SIGINT.
        const watch = shell.start(command);
        for (const nodeId of readmeNodes) await watch.waitForOutput(new RegExp(`^data: .*"node_id":"${nodeId}"`, 'm'), WAIT_MS);
        watch.signal('SIGINT');
        await watch.waitForExit(WAIT_MS);
        continue;
      }
      const line = await shell.run(command, { timeoutMs: WAIT_MS });
      assert.equal(line.exit?.code, 0, `$ ${command}\n${line.stderr}`);
      const body = JSON.parse(line.stdout) as Record<string, unknown>;
      assert.equal(body.code, undefined, `$ ${command}\nanswered a problem: ${line.stdout}`);
      if (/-X POST/.test(command)) {
        const nodeId = body.node_id ?? body.registered_node_id;
        assert.equal(typeof nodeId, 'string', `$ ${command}\nno node id in ${line.stdout}`);
        assert.equal(body.outcome, 'added', `$ ${command}\n${line.stdout}`);
        readmeNodes.push(nodeId as string);
      } else if (/\/api\/v1\/nodes(\?|'|\s|$)/.test(command)) {
        // A query is shown to find the example's nodes: it must return at least one of them.
        const found = (body.nodes as ApiNode[]).map((node) => node.node_id);
        assert.ok(
          found.some((nodeId) => readmeNodes.includes(nodeId)),
          `$ ${command}\nfound none of the README's nodes (${readmeNodes.join(', ')}): ${line.stdout}`,
        );
      }
    }
    assert.ok(readmeNodes.length >= 2, `the examples registered ${readmeNodes.length} nodes`);
  });

  it('the command line tour works as shown', { timeout: 300_000 }, async () => {
    const blocks = bashBlocks('Try it');
    const tour = blocks.find((block) => /^rollcall /m.test(block));
    assert.ok(tour, 'no block of rollcall commands in "Try it"');
    const env = { ROLLCALL_URL: url };
    for (const command of commandsOf(tour).map(withoutComment)) {
      const subcommand = command.split(/\s+/)[1];
      if (subcommand === 'join') {
        // Joins, heartbeats, and leaves with a tombstone on Ctrl-C (its node id kept in a file of the test's).
        const joined = shell.start(`${command} --node-id-file ${join(dir, 'node_id')}`, env);
        const nodeId = (await joined.waitForOutput(/^joined \S+ as (\S+)$/m, WAIT_MS))[1] as string;
        const node = await getNode(nodeId);
        assert.equal(node.status, 'online');
        assert.equal(node.role, /--role (\S+)/.exec(command)?.[1]);
        assert.deepEqual(node.labels, (/--labels (\S+)/.exec(command)?.[1] ?? '').split(','));
        joined.signal('SIGINT');
        assert.deepEqual(await joined.waitForExit(WAIT_MS), { code: 0, signal: null }, `$ ${joined.command}\n${joined.stdout}\n${joined.stderr}`);
        const left = await getNode(nodeId);
        assert.equal(left.status, 'removed');
        assert.equal(left.removal_reason, 'graceful_shutdown');
      } else if (subcommand === 'demo') {
        const demo = shell.start(command, env);
        const size = /--nodes (\d+)/.exec(command)?.[1];
        const [, online] = await demo.waitForOutput(/fleet up: (\d+) nodes online/, WAIT_MS);
        if (size !== undefined) assert.equal(online, size);
        demo.signal('SIGINT');
        assert.deepEqual(await demo.waitForExit(WAIT_MS), { code: 0, signal: null }, `$ ${demo.command}\n${demo.stdout}\n${demo.stderr}`);
      } else {
        const line = await shell.run(command, { env, timeoutMs: WAIT_MS });
        assert.equal(line.exit?.code, 0, `$ ${command}\n${line.stderr}`);
        if (subcommand === 'nodes') {
          for (const nodeId of readmeNodes) assert.match(line.stdout, new RegExp(`^${nodeId} `, 'm'), `$ ${command}\nno row for ${nodeId}:\n${line.stdout}`);
        } else if (subcommand === 'node') {
          const nodeId = command.split(/\s+/)[2] as string;
          assert.match(line.stdout, new RegExp(`^node_id\\s+${nodeId}$`, 'm'), `$ ${command}\n${line.stdout}`);
        } else if (subcommand === 'deregister') {
          const nodeId = command.split(/\s+/)[2] as string;
          assert.match(line.stdout, new RegExp(`^${nodeId}: removed$`, 'm'), `$ ${command}\n${line.stdout}`);
          const node = await getNode(nodeId);
          assert.equal(node.status, 'removed');
          assert.equal(node.removal_reason, /--reason (\S+)/.exec(command)?.[1] ?? 'manual_deregistration');
        }
      }
    }
  });
});
