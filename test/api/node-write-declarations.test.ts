// Node binding is declared with each write route (config.nodeWrite): a write route a nodes:write
// credential may call, added without a declaration, fails when it is added, never silently going
// unchecked; admin, public and read routes need none.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { assertNodeWriteDeclared } from '../../src/api/auth.js';

/** An app that checks its routes as buildApp does. */
function app(): FastifyInstance {
  const instance = Fastify() as unknown as FastifyInstance;
  instance.addHook('onRoute', (route) => assertNodeWriteDeclared(route));
  return instance;
}

const ok = async (): Promise<string> => 'ok';

describe('node write declarations', () => {
  it('refuses a write route without config.nodeWrite when it is added', () => {
    assert.throws(() => app().post('/api/v1/things', ok), /POST \/api\/v1\/things takes writes \(scope nodes:write\) but declares no config\.nodeWrite/);
    assert.throws(() => app().put('/v1/agent/things/:id', { config: { auth: { scope: 'nodes:write' } } }, ok), /PUT \/v1\/agent\/things\/:id/);
    assert.throws(() => app().route({ method: ['GET', 'DELETE'], url: '/api/v1/things/:id', handler: ok }), /DELETE \/api\/v1\/things\/:id/);
    // Inside a plugin too, as the Consul routes are registered.
    const withPlugin = app();
    withPlugin.register(async (child) => {
      child.put('/v1/agent/other', ok);
    });
    return assert.rejects(async () => withPlugin.ready(), /PUT \/v1\/agent\/other/);
  });

  it('takes declared writes, and routes no SVID can write with', async () => {
    const instance = app();
    instance.post('/api/v1/things', { config: { nodeWrite: 'none' } }, ok);
    instance.put('/api/v1/things/:id', { config: { nodeWrite: { enforced: true, target: (request) => ({ namespace: undefined, node_id: (request.params as { id: string }).id }) } } }, ok);
    instance.put('/api/v1/things/:id/check', { config: { nodeWrite: { enforced: true, target: 'handler' } } }, ok);
    instance.get('/api/v1/things', ok);
    instance.post('/api/v1/admin/things', ok);
    instance.post('/api/v1/policies', { config: { auth: { scope: 'admin' } } }, ok);
    instance.post('/api/v1/enrol', { config: { auth: 'public' } }, ok);
    await instance.ready();
    await instance.close();
  });
});
