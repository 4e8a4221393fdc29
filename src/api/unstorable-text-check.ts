// Refuses, before any validation or handler, a request carrying text the store cannot hold (a NUL
// character, an unpaired surrogate) anywhere in its path parameters, query or body, keys included:
// one seam for every HTTP door, so such text never reaches a write shared with other clients.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RollcallError } from '../domain/errors.js';
import { fieldSubject, findUnstorableText, unstorableKindOf, unstorableTextError } from '../domain/storable-text.js';

/** Path parameters and query strings: names and values (a repeated parameter is an array). */
function parameterProblem(parameters: unknown, label: 'Path parameter' | 'Query parameter'): RollcallError | null {
  if (parameters === null || typeof parameters !== 'object') return null;
  for (const [name, value] of Object.entries(parameters)) {
    const named = unstorableKindOf(name);
    const found = named ? { path: '', key: true, kind: named } : findUnstorableText(value);
    if (!found) continue;
    // A bad name is shown escaped (JSON), so the answer itself carries nothing unstorable.
    const parameter = named ? JSON.stringify(name) : name;
    return unstorableTextError(found, { label: `${label} ${parameter}`, details: { parameter } });
  }
  return null;
}

function requestProblem(request: FastifyRequest): RollcallError | null {
  const problem = parameterProblem(request.params, 'Path parameter') ?? parameterProblem(request.query, 'Query parameter');
  if (problem) return problem;
  const found = findUnstorableText(request.body);
  return found ? unstorableTextError(found, fieldSubject('', found.path)) : null;
}

/** Installs the check; install it before other `preValidation` hooks (auth), so none of them sees such text. */
export function installUnstorableTextCheck(app: FastifyInstance): void {
  app.addHook('preValidation', (request, _reply, done) => {
    done(requestProblem(request) ?? undefined);
  });
}
