// `rollcall ca init` on disk: owner-only permissions, no overwrite, and loading what it wrote.
import { strict as assert } from 'node:assert';
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RollcallError } from '../../src/domain/errors.js';
import { initCaFiles, loadCaFiles } from '../../src/security/ca.js';

const roots: string[] = [];
after(async () => {
  await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
});

async function tempRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'rollcall-ca-'));
  roots.push(root);
  return root;
}

describe('ca init files', () => {
  it('writes ca.pem and ca.key 0600 in a 0700 folder, and refuses to overwrite them', async () => {
    const dir = join(await tempRoot(), 'nested', 'ca');
    const { certFile, keyFile, ca } = await initCaFiles(dir, 'files.test');
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(certFile)).mode & 0o777, 0o600);
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    assert.match(await readFile(keyFile, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
    const key = await readFile(keyFile, 'utf8');

    await assert.rejects(initCaFiles(dir, 'files.test'), (error: unknown) => error instanceof RollcallError && error.code === 'CA_EXISTS');
    assert.equal(await readFile(keyFile, 'utf8'), key, 'the key is untouched');

    const loaded = await loadCaFiles(certFile, keyFile);
    assert.equal(loaded.trustDomain, 'files.test');
    assert.equal(loaded.bundlePem, ca.bundlePem);
  });

  it('refuses a CA key readable by others, and a missing file, naming the option', async () => {
    const { certFile, keyFile } = await initCaFiles(await tempRoot(), 'files.test');
    await chmod(keyFile, 0o644);
    await assert.rejects(loadCaFiles(certFile, keyFile), (error: unknown) => error instanceof RollcallError && error.code === 'CONFIG_INVALID' && error.details?.field === 'caKeyFile');
    await assert.rejects(loadCaFiles(`${certFile}.missing`, keyFile), (error: unknown) => error instanceof RollcallError && error.code === 'CONFIG_INVALID');
  });
});
