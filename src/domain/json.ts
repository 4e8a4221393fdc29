// JSON helpers the model relies on: canonical serialisation (for content hashes) and containment.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** Serialises with object keys sorted, so equal documents give equal strings. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.keys(value)
    .sort()
    .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
    .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
  return `{${entries.join(',')}}`;
}

/**
 * PostgreSQL's jsonb `@>` semantics: every key of `pattern` is in `doc` with a contained value;
 * an array contains another when every element of the pattern is contained in some element.
 */
export function jsonContains(doc: unknown, pattern: unknown): boolean {
  if (pattern === null || typeof pattern !== 'object') {
    if (Array.isArray(doc)) return doc.some((item) => item === pattern);
    return doc === pattern;
  }
  if (Array.isArray(pattern)) {
    if (!Array.isArray(doc)) return false;
    return pattern.every((want) => doc.some((have) => jsonContains(have, want)));
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return false;
  const docObject = doc as Record<string, unknown>;
  return Object.entries(pattern as Record<string, unknown>).every(
    ([key, want]) => key in docObject && jsonContains(docObject[key], want),
  );
}

export function isJsonObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
