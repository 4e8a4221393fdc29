// Reads an introspection announcement, bare or wrapped in an OnexEnvelopeV1, into a registration.
// Every intake (HTTP, event bus) goes through here, so they accept and refuse exactly the same.
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { RollcallError } from './errors.js';
import { isJsonObject } from './json.js';
import { fromIntrospection, type Registration, type RegistrationDefaults } from './node.js';
import { EnvelopeSchema, IntrospectionSchema, type Envelope } from './schemas.js';

const checkIntrospection = TypeCompiler.Compile(IntrospectionSchema);
const checkEnvelope = TypeCompiler.Compile(EnvelopeSchema);

export const INTROSPECTION_EVENT_TYPES = ['NODE_INTROSPECTION', 'node-introspection', 'NODE_REGISTRATION'] as const;

export interface ParsedIntrospection {
  registration: Registration;
  envelope: Envelope | null;
}

function validationError(what: string, checker: typeof checkIntrospection | typeof checkEnvelope, value: unknown): RollcallError {
  const errors = [...checker.Errors(value)].slice(0, 10).map((error) => ({ path: error.path || '/', message: error.message }));
  const first = errors[0];
  return new RollcallError('VALIDATION_FAILED', `Invalid ${what}: ${first ? `${first.path} ${first.message}` : 'malformed'}.`, {
    details: { errors },
  });
}

export function isEnvelope(body: unknown): boolean {
  return isJsonObject(body) && 'envelope_version' in body && 'payload' in body;
}

export function parseIntrospection(body: unknown, defaults: RegistrationDefaults): ParsedIntrospection {
  if (!isJsonObject(body)) throw new RollcallError('VALIDATION_FAILED', 'An introspection must be a JSON object.');
  let envelope: Envelope | null = null;
  let payload: unknown = body;
  if (isEnvelope(body)) {
    if (!checkEnvelope.Check(body)) throw validationError('OnexEnvelopeV1', checkEnvelope, body);
    envelope = body;
    if (!(INTROSPECTION_EVENT_TYPES as readonly string[]).includes(body.event_type)) {
      throw new RollcallError('VALIDATION_FAILED', `Envelope event_type ${body.event_type} is not an introspection (${INTROSPECTION_EVENT_TYPES.join(', ')}).`, {
        details: { event_type: body.event_type },
      });
    }
    payload = body.payload;
  }
  if (!checkIntrospection.Check(payload)) throw validationError('introspection payload', checkIntrospection, payload);
  return { registration: fromIntrospection(payload, defaults), envelope };
}
