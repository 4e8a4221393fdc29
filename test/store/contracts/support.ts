// What the role contracts share: a fixed clock, a registration and the outcome of a change.
import { strict as assert } from 'node:assert';
import { fromDagi, type Registration } from '../../../src/domain/node.js';
import type { WriteOutcome } from '../../../src/store/store.js';

export const T0 = Date.parse('2026-01-01T00:00:00Z');

export function reg(nodeId: string, overrides: Partial<Registration> = {}): Registration {
  return {
    ...fromDagi({ node_id: nodeId, hostname: `${nodeId}.local`, role: 'worker', labels: ['a'] }, { leaseTtlMs: 30_000 }),
    ...overrides,
  };
}

export function changed(outcome: WriteOutcome | undefined): Extract<WriteOutcome, { status: 'changed' }> {
  assert.ok(outcome, 'an outcome');
  assert.equal(outcome.status, 'changed', `expected a change, got ${JSON.stringify(outcome)}`);
  return outcome;
}
