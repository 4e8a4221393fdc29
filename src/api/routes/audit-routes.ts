// The audit log, read-only: newest first, filtered by namespace, action, decision and time.
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { RollcallError } from '../../domain/errors.js';
import { AUDIT_DECISIONS, type AuditLog } from '../../security/audit.js';
import type { AuditDecision } from '../../store/store.js';
import * as params from '../query-params.js';

const AuditQuery = Type.Object(
  {
    namespace: Type.Optional(Type.String()),
    action: Type.Optional(Type.String({ maxLength: 64, description: 'node.register, node.deregister, policy.update, quota.update, …' })),
    decision: Type.Optional(Type.String({ description: 'allowed or denied' })),
    since: Type.Optional(Type.String({ maxLength: 40, description: 'ISO-8601 timestamp: entries at or after it.' })),
    limit: Type.Optional(Type.String({ description: 'Page size, 1 to 1000 (default 100)' })),
    cursor: Type.Optional(Type.String({ maxLength: 64, description: 'next_cursor of the previous page' })),
  },
  { additionalProperties: false },
);

export function auditRoutes(app: FastifyInstance, options: { audit: AuditLog }): void {
  app.get(
    '/api/v1/audit',
    {
      config: { auth: { scope: 'admin' } },
      schema: { tags: ['audit'], summary: 'Audit entries, newest first, with cursor paging.', querystring: AuditQuery },
    },
    async (request) => {
      const query = request.query as params.Query;
      const namespace = params.single(query, 'namespace') === undefined ? undefined : params.namespace(query);
      const action = params.single(query, 'action');
      const decision = params.single(query, 'decision');
      if (decision !== undefined && !(AUDIT_DECISIONS as readonly string[]).includes(decision)) {
        throw new RollcallError('VALIDATION_FAILED', `Query parameter decision must be one of ${AUDIT_DECISIONS.join(', ')}.`, { details: { parameter: 'decision' } });
      }
      const since = params.timestamp(query, 'since');
      const cursor = params.single(query, 'cursor');
      const limit = params.integer(query, 'limit', { min: 1, max: 1000, fallback: 100 });
      return options.audit.query({
        limit,
        ...(namespace === undefined ? {} : { namespace }),
        ...(action === undefined ? {} : { action }),
        ...(decision === undefined ? {} : { decision: decision as AuditDecision }),
        ...(since === undefined ? {} : { since }),
        ...(cursor === undefined || cursor === '' ? {} : { cursor }),
      });
    },
  );
}
