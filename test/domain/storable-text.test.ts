// The walk every door makes over what it accepted: NUL characters and unpaired surrogates, anywhere
// (values, keys, any depth), are found with the path of the field that holds them.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isRollcallError } from '../../src/domain/errors.js';
import { assertStorableText, findUnstorableText, pathText, toStorableText, unstorableKindOf } from '../../src/domain/storable-text.js';

describe('unstorable text', () => {
  it('tells NUL characters and unpaired surrogates from storable text', () => {
    assert.equal(unstorableKindOf('plain'), null);
    assert.equal(unstorableKindOf(''), null);
    assert.equal(unstorableKindOf('emoji 😀 and 𝄞'), null, 'paired surrogates are text');
    assert.equal(unstorableKindOf('\\u0000 written out'), null, 'a backslash escape in the text itself is fine');
    assert.equal(unstorableKindOf('\uFFFD'), null);
    assert.equal(unstorableKindOf('a\u0000b'), 'nul_character');
    assert.equal(unstorableKindOf(JSON.parse('"\\u0000"') as string), 'nul_character');
    assert.equal(unstorableKindOf('\uD800'), 'lone_surrogate');
    assert.equal(unstorableKindOf('x\uDFFFy'), 'lone_surrogate');
    assert.equal(unstorableKindOf('\uDE00\uD83D'), 'lone_surrogate', 'a pair in the wrong order is two lone halves');
    assert.equal(unstorableKindOf('😀'.slice(0, 1)), 'lone_surrogate');
    assert.equal(unstorableKindOf('ok😀\uD800'), 'lone_surrogate');
  });

  it('finds the first one in a document with the path of its field', () => {
    assert.equal(findUnstorableText({ a: 1, b: ['x', { c: true, d: null }], e: 'fine 😀' }), null);
    assert.deepEqual(findUnstorableText({ capabilities: { models: ['ok', 'bad\u0000'] } }), { path: 'capabilities.models[1]', key: false, kind: 'nul_character' });
    assert.deepEqual(findUnstorableText({ metadata: { 'a b': { c: '\uD800' } } }), { path: 'metadata["a b"].c', key: false, kind: 'lone_surrogate' });
    assert.deepEqual(findUnstorableText('\u0000'), { path: '', key: false, kind: 'nul_character' });
    assert.deepEqual(findUnstorableText([['x'], ['y', '\uDC00']]), { path: '[1][1]', key: false, kind: 'lone_surrogate' });
  });

  it('checks object keys, and quotes a bad key in the path without carrying it', () => {
    const found = findUnstorableText({ config: { ok: 1, 'bad\u0000key': 2 } });
    assert.deepEqual(found, { path: 'config["bad\\u0000key"]', key: true, kind: 'nul_character' });
    assert.equal(unstorableKindOf(found?.path ?? ''), null, 'the path itself is storable');
    assert.deepEqual(findUnstorableText(JSON.parse('{"a":{"\\ud800":1}}')), { path: 'a["\\ud800"]', key: true, kind: 'lone_surrogate' });
  });

  it('walks documents of any depth without recursion', () => {
    let deep: unknown = 'end\u0000';
    for (let i = 0; i < 100_000; i += 1) deep = i % 2 === 0 ? { n: deep } : [deep];
    const found = findUnstorableText(deep);
    assert.equal(found?.kind, 'nul_character');
    assert.equal(findUnstorableText(JSON.parse(`${'['.repeat(50_000)}${']'.repeat(50_000)}`)), null);
  });

  it('formats paths: plain names dotted, indexes bracketed, other keys quoted', () => {
    assert.equal(pathText(['capabilities', 'models', 1]), 'capabilities.models[1]');
    assert.equal(pathText(['a-b', 'c.d', 0, 'e']), 'a-b["c.d"][0].e');
    assert.equal(pathText([]), '');
  });

  it('refuses with VALIDATION_FAILED naming the field under its root', () => {
    assert.throws(
      () => assertStorableText({ models: ['a', 'b\u0000'] }, 'capabilities'),
      (error: unknown) => {
        assert.ok(isRollcallError(error));
        assert.equal(error.code, 'VALIDATION_FAILED');
        assert.equal(error.status, 400);
        assert.deepEqual(error.details, { field: 'capabilities.models[1]', reason: 'nul_character' });
        assert.match(error.message, /^Field capabilities\.models\[1\] contains a NUL character/);
        return true;
      },
    );
    assert.throws(
      () => assertStorableText({ '\uD800': 1 }, 'metadata'),
      (error: unknown) => isRollcallError(error) && error.details?.key === true && error.details.field === 'metadata["\\ud800"]',
    );
    assert.doesNotThrow(() => assertStorableText({ fine: ['😀', 1, null, { x: '\\u0000' }] }, 'metadata'));
  });

  it('agrees with a JSON round trip through what PostgreSQL can hold', () => {
    // Any string is storable exactly when it has no NUL and is well-formed UTF-16 (it encodes as UTF-8 and back).
    const unit = fc.oneof(
      fc.constantFrom('\u0000', '\uD800', '\uDBFF', '\uDC00', '\uDFFF', '😀', 'a'),
      fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)),
    );
    fc.assert(
      fc.property(fc.array(unit, { maxLength: 8 }), (units) => {
        const text = units.join('');
        const wellFormed = Buffer.from(text, 'utf8').toString('utf8') === text;
        assert.equal(unstorableKindOf(text) === null, wellFormed && !text.includes('\u0000'), JSON.stringify(text));
      }),
      { numRuns: 1000 },
    );
  });

  it('replaces unstorable characters where a record must never be refused', () => {
    assert.deepEqual(toStorableText({ a: 'x\u0000y', ['k\uD800']: ['\uDC00', 1], ok: '😀' }), { a: 'x\uFFFDy', ['k\uFFFD']: ['\uFFFD', 1], ok: '😀' });
    const clean = { a: 'fine' };
    assert.equal(toStorableText(clean), clean, 'storable values are returned as they are');
  });
});
