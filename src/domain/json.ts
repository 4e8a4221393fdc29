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
 * Whether two JSON documents are equal whatever their key order: the same answer as comparing
 * their canonicalJson, without building either string (the update path compares every field).
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') {
    // JSON has no NaN or Infinity: they serialise as null, and so compare.
    const asJson = (value: unknown): unknown => (typeof value === 'number' && !Number.isFinite(value) ? null : value);
    return asJson(a) === asJson(b);
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i += 1) if (!jsonEqual(a[i] ?? null, b[i] ?? null)) return false;
    return true;
  }
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  let defined = 0;
  for (const key in left) {
    if (!Object.hasOwn(left, key) || left[key] === undefined) continue;
    defined += 1;
    if (!Object.hasOwn(right, key) || right[key] === undefined || !jsonEqual(left[key], right[key])) return false;
  }
  for (const key in right) if (Object.hasOwn(right, key) && right[key] !== undefined) defined -= 1;
  return defined === 0;
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
  return Object.entries(pattern as Record<string, unknown>).every(([key, want]) => key in docObject && jsonContains(docObject[key], want));
}

export function isJsonObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Nesting depth of a JSON value (a scalar is 0), walked without recursion so any depth is safe to measure. */
export function jsonDepth(value: unknown): number {
  let deepest = 0;
  const pending: Array<[unknown, number]> = [[value, 0]];
  for (let item = pending.pop(); item; item = pending.pop()) {
    const [current, depth] = item;
    if (current === null || typeof current !== 'object') continue;
    deepest = Math.max(deepest, depth + 1);
    for (const child of Object.values(current)) pending.push([child, depth + 1]);
  }
  return deepest;
}
