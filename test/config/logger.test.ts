// The log format: chosen once at start (auto: readable on a terminal), JSON lines unchanged for machines.
import { strict as assert } from 'node:assert';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/config.js';
import { createLogger, resolveLogFormat } from '../../src/config/logger.js';
import { isRollcallError } from '../../src/domain/errors.js';

describe('log format', () => {
  it('auto is pretty on a terminal and JSON elsewhere; json and pretty are taken as said', () => {
    assert.equal(resolveLogFormat('auto', { isTTY: true }), 'pretty');
    assert.equal(resolveLogFormat('auto', { isTTY: false }), 'json');
    assert.equal(resolveLogFormat('auto', {}), 'json');
    assert.equal(resolveLogFormat('json', { isTTY: true }), 'json');
    assert.equal(resolveLogFormat('pretty', { isTTY: false }), 'pretty');
  });

  it('is configured by ROLLCALL_LOG_FORMAT or --log-format, auto by default, and a bad value names the field', () => {
    assert.equal(loadConfig({ env: {} }).logFormat, 'auto');
    assert.equal(loadConfig({ env: { ROLLCALL_LOG_FORMAT: 'json' } }).logFormat, 'json');
    assert.equal(loadConfig({ env: { ROLLCALL_LOG_FORMAT: 'json' }, flags: { logFormat: 'pretty' } }).logFormat, 'pretty');
    assert.throws(
      () => loadConfig({ env: { ROLLCALL_LOG_FORMAT: 'loud' } }),
      (error: unknown) => isRollcallError(error) && error.code === 'CONFIG_INVALID' && error.details?.field === 'logFormat',
    );
  });

  it('writes JSON lines, secrets redacted, to a destination whatever the format', () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    createLogger('info', destination, 'pretty').info({ apiKey: 'rk_secret', node: 'n1' }, 'hello');
    const record = JSON.parse(lines.join('')) as Record<string, unknown>;
    assert.deepEqual({ ...record, time: undefined }, { level: 30, time: undefined, service: 'rollcall', apiKey: '[redacted]', node: 'n1', msg: 'hello' });
  });
});
