// What serve prints to start with: commands a person can paste as they are.
import { strict as assert } from 'node:assert';
import { it } from 'node:test';
import { cliCommand, firstSteps, renderFirstSteps } from '../../src/cli/first-steps.js';

it('names the CLI as this shell reaches it: from the checkout, from elsewhere, or installed', () => {
  assert.equal(cliCommand('/home/ann/rollcall/bin/rollcall.js', '/home/ann/rollcall'), 'node bin/rollcall.js');
  assert.equal(cliCommand('/home/ann/rollcall/bin/rollcall.js', '/tmp'), 'node /home/ann/rollcall/bin/rollcall.js');
  assert.equal(cliCommand('/home/ann/my rollcall/bin/rollcall.js', '/tmp'), 'node "/home/ann/my rollcall/bin/rollcall.js"');
  assert.equal(cliCommand('/usr/local/bin/rollcall', '/tmp'), 'rollcall');
});

it('points the commands at the registry: ROLLCALL_URL only when it is not the default address', () => {
  const local = firstSteps('http://127.0.0.1:9205', 'rollcall');
  assert.deepEqual(local.try, ['curl -s http://127.0.0.1:9205/api/v1/nodes', 'rollcall nodes', 'rollcall demo --nodes 20']);
  assert.equal(local.openapi, 'http://127.0.0.1:9205/openapi.json');
  const other = firstSteps('http://127.0.0.1:7000', 'rollcall');
  assert.deepEqual(other.try.slice(1), ['ROLLCALL_URL=http://127.0.0.1:7000 rollcall nodes', 'ROLLCALL_URL=http://127.0.0.1:7000 rollcall demo --nodes 20']);
  assert.match(renderFirstSteps(other), /^ {2}OpenAPI +http:\/\/127\.0\.0\.1:7000\/openapi\.json$/m);
});
