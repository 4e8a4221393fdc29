// What `rollcall serve` shows a newcomer: on a terminal, readable log lines and a short block saying where
// the API and the OpenAPI document are and what to try first (commands that work as printed); elsewhere,
// JSON lines only, one of which carries the same facts.
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stripVTControlCharacters } from 'node:util';
import { BIN, freePort, killAllCli, spawnCli } from '../support/processes.js';
import { createShell, type Shell } from '../support/shell.js';

const START_MS = 120_000;

describe('first run', () => {
  let dir: string;
  let shell: Shell;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rollcall-first-run-'));
    shell = await createShell();
  });
  after(async () => {
    await shell.close();
    await killAllCli();
    await rm(dir, { recursive: true, force: true });
  });

  it('on a terminal: readable logs, and where the API, the OpenAPI document and the first commands are', { timeout: 300_000 }, async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    // script(1) gives the server a terminal, as when a person runs it.
    const serve = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} serve --data-dir ${join(dir, 'tty')} --port ${port}`;
    const terminal = shell.start(`script -qfec '${serve}' /dev/null`);
    await terminal.waitForOutput(/Ctrl-C stops it/, START_MS);
    const screen = stripVTControlCharacters(terminal.stdout).replaceAll('\r', '');

    assert.match(screen, /^\[[\d:.]+\] INFO: rollcall serving /m, screen);
    assert.doesNotMatch(screen, /^\{"level"/m, 'JSON log lines on a terminal');
    assert.match(screen, new RegExp(`^rollcall \\S+ serving ${url} \\(embedded database in `, 'm'));
    assert.match(screen, new RegExp(`^  API +${url}/api/v1/nodes$`, 'm'));
    assert.match(screen, new RegExp(`^  OpenAPI +${url}/openapi.json$`, 'm'));
    const commands = [...screen.matchAll(/^ {2}(?:Try)? +((?:curl|ROLLCALL_URL=|node |rollcall ).*)$/gm)].map((match) => match[1] as string);
    assert.ok(commands.some((command) => command.startsWith('curl')) && commands.some((command) => / nodes$/.test(command)), screen);

    const openapi = (await (await fetch(`${url}/openapi.json`)).json()) as { openapi?: string; paths?: object };
    assert.match(openapi.openapi ?? '', /^3\./);
    // Every command it suggests answers at once; the demo runs until Ctrl-C, so it has to say it started.
    for (const command of commands) {
      if (command.includes(' demo')) {
        const demo = shell.start(command);
        await demo.waitForOutput(/fleet up: \d+ nodes online/, 60_000);
        demo.signal('SIGINT');
        assert.deepEqual(await demo.waitForExit(60_000), { code: 0, signal: null }, `$ ${command}\n${demo.stderr}`);
      } else {
        const line = await shell.run(command, { timeoutMs: 60_000 });
        assert.equal(line.exit?.code, 0, `$ ${command}\n${line.stdout}\n${line.stderr}`);
        assert.match(line.stdout, /registry-/, `$ ${command}\n${line.stdout}`);
      }
    }
    terminal.signal('SIGTERM');
    await terminal.waitForExit(60_000);
  });

  it('elsewhere: JSON lines only, one of them saying where to start', { timeout: 300_000 }, async () => {
    const server = spawnCli(['serve', '--data-dir', join(dir, 'pipe'), '--port', String(await freePort())], { env: { ROLLCALL_LOG_LEVEL: 'info' } });
    const url = (await server.waitForLine('stderr', /^rollcall \S+ serving (http:\/\/\S+) /, START_MS))[1] as string;
    await server.waitForLine('stdout', /"msg":"where to start"/, 30_000);
    const lines = server.stdout.split('\n').filter(Boolean);
    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const start = records.find((record) => record.msg === 'where to start');
    assert.deepEqual(
      { ...start, time: undefined, try: undefined },
      { level: 30, time: undefined, service: 'rollcall', url, api: `${url}/api/v1/nodes`, openapi: `${url}/openapi.json`, health: `${url}/health`, try: undefined, msg: 'where to start' },
    );
    assert.ok(Array.isArray(start?.try) && start.try.some((command) => String(command).startsWith(`curl -s ${url}/`)), JSON.stringify(start));
    assert.doesNotMatch(server.stderr, /^ {2}API /m, 'the terminal block went to a pipe');
  });
});
