// Text PostgreSQL cannot store: the NUL character (text and jsonb refuse it, also as the JSON escape
// \u0000) and unpaired UTF-16 surrogates (no UTF-8 encoding exists for them). Every door refuses such
// text with one walk over what it accepted, before any of it reaches a write shared with others.
import { RollcallError } from './errors.js';

export const UNSTORABLE_KINDS = ['nul_character', 'lone_surrogate'] as const;
export type UnstorableKind = (typeof UNSTORABLE_KINDS)[number];

const DESCRIPTIONS: Record<UnstorableKind, string> = {
  nul_character: 'a NUL character (U+0000)',
  lone_surrogate: 'an unpaired UTF-16 surrogate (U+D800 to U+DFFF)',
};

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** What makes `text` unstorable, or null when the store can hold it. */
export function unstorableKindOf(text: string): UnstorableKind | null {
  if (text.includes('\u0000')) return 'nul_character';
  if (LONE_SURROGATE.test(text)) return 'lone_surrogate';
  return null;
}

export interface UnstorableText {
  /** Where the text is, as `capabilities.models[1]` or `metadata["a b"]`; '' for the value itself. */
  path: string;
  /** The text is an object key (the last step of `path`), not a value. */
  key: boolean;
  kind: UnstorableKind;
}

type Segment = string | number;

interface Step {
  value: unknown;
  parent: Step | null;
  segment: Segment | null;
}

const PLAIN_KEY = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

/** `a.b[2]["c d"]`: keys that are not plain names are quoted as JSON strings, which escape unstorable text. */
export function pathText(segments: readonly Segment[]): string {
  let text = '';
  for (const segment of segments) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else if (PLAIN_KEY.test(segment)) text += text === '' ? segment : `.${segment}`;
    else text += `[${JSON.stringify(segment)}]`;
  }
  return text;
}

function segmentsOf(step: Step, last?: Segment): Segment[] {
  const segments: Segment[] = last === undefined ? [] : [last];
  for (let at: Step | null = step; at !== null && at.segment !== null; at = at.parent) segments.push(at.segment);
  return segments.reverse();
}

/**
 * The first unstorable string in a parsed JSON value (keys included), or null. Walked without
 * recursion, so a document of any depth is safe to check; object keys are checked before values.
 */
export function findUnstorableText(value: unknown): UnstorableText | null {
  const pending: Step[] = [{ value, parent: null, segment: null }];
  for (let step = pending.pop(); step; step = pending.pop()) {
    const current = step.value;
    if (typeof current === 'string') {
      const kind = unstorableKindOf(current);
      if (kind) return { path: pathText(segmentsOf(step)), key: false, kind };
      continue;
    }
    if (current === null || typeof current !== 'object') continue;
    if (Array.isArray(current)) {
      for (let index = current.length - 1; index >= 0; index -= 1) pending.push({ value: current[index], parent: step, segment: index });
      continue;
    }
    const keys = Object.keys(current);
    for (const key of keys) {
      const kind = unstorableKindOf(key);
      if (kind) return { path: pathText(segmentsOf(step, key)), key: true, kind };
    }
    for (let index = keys.length - 1; index >= 0; index -= 1) {
      const key = keys[index] as string;
      pending.push({ value: (current as Record<string, unknown>)[key], parent: step, segment: key });
    }
  }
  return null;
}

/** How a refusal names where the text was: `Field metadata.a`, `Query parameter role`, with details to match. */
export interface TextSubject {
  /** The name of the place, e.g. `Field capabilities.models[1]` or `Query parameter role`. */
  label: string;
  details: Record<string, unknown>;
}

/** The subject of a document field: its path under `root` (a field name, or '' for a whole body). */
export function fieldSubject(root: string, path: string): TextSubject {
  const field = root === '' ? path : path === '' ? root : path.startsWith('[') ? `${root}${path}` : `${root}.${path}`;
  return { label: field === '' ? 'The document' : `Field ${field}`, details: { field } };
}

export function unstorableTextError(found: UnstorableText, subject: TextSubject): RollcallError {
  const where = found.key ? `The name of ${subject.label.charAt(0).toLowerCase()}${subject.label.slice(1)}` : subject.label;
  return new RollcallError('VALIDATION_FAILED', `${where} contains ${DESCRIPTIONS[found.kind]}, which cannot be stored.`, {
    details: { ...subject.details, reason: found.kind, ...(found.key ? { key: true } : {}) },
  });
}

/** Throws VALIDATION_FAILED naming the first unstorable string of `value`, a document under `root`. */
export function assertStorableText(value: unknown, root = ''): void {
  const found = findUnstorableText(value);
  if (found) throw unstorableTextError(found, fieldSubject(root, found.path));
}

/** `value` with every unstorable character replaced by U+FFFD, keys included (for records that must never be refused). */
export function toStorableText<T>(value: T): T {
  if (findUnstorableText(value) === null) return value;
  const replace = (text: string): string => text.replaceAll('\u0000', '\uFFFD').replace(new RegExp(LONE_SURROGATE.source, 'g'), '\uFFFD');
  return JSON.parse(
    JSON.stringify(value, (_key, item: unknown) => {
      if (typeof item === 'string') return replace(item);
      if (item === null || typeof item !== 'object' || Array.isArray(item)) return item;
      return Object.fromEntries(Object.entries(item as Record<string, unknown>).map(([key, inner]) => [replace(key), inner]));
    }),
  ) as T;
}
