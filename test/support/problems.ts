// The assertion every refusal test makes: an application/problem+json answer with the expected
// status and stable code, a status field that matches, a detail, and a type under rollcall's URN.
import { strict as assert } from 'node:assert';

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail: string;
  details?: Record<string, unknown>;
}

/** What the test HTTP helpers (json, tlsJson) return. */
export interface AnsweredRequest {
  status: number;
  contentType: string;
  body: unknown;
}

export function assertProblem(response: AnsweredRequest, status: number, code: string): Problem {
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.match(response.contentType, /^application\/problem\+json/);
  const problem = response.body as Problem;
  assert.equal(problem.code, code, JSON.stringify(problem));
  assert.equal(problem.status, status);
  assert.ok(typeof problem.detail === 'string' && problem.detail.length > 0, 'a problem has a detail');
  assert.match(problem.type, /^urn:rollcall:problem:/);
  return problem;
}

export async function expectProblem(request: Promise<AnsweredRequest>, status: number, code: string): Promise<Problem> {
  return assertProblem(await request, status, code);
}
