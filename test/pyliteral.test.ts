// Tests of the Python-literal parser on the real checkpoint metadata and on edge cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PyLiteralError, parsePyLiteral, type PyDict } from '../src/io/pyliteral.js';
import { openSafetensors } from '../src/io/safetensors.js';
import { goldenPath, goldenSkip, requireGolden } from './helpers/golden.js';

test('parses every config entry of the e2e checkpoint metadata', { skip: goldenSkip('e2e/model.safetensors') }, () => {
  requireGolden('e2e/model.safetensors');
  const file = openSafetensors(goldenPath('e2e', 'model.safetensors'));
  const metadata = file.metadata;
  file.close();
  for (const [key, text] of Object.entries(metadata)) {
    if (key === '_target_') continue; // a bare class name, not a literal
    const value = parsePyLiteral(text) as PyDict;
    assert.equal(typeof value['_target_'], 'string', key);
  }
  const vae = parsePyLiteral(metadata['vae']!) as PyDict;
  assert.equal(vae['scaling_factor'], null);
  assert.equal(vae['sample_posterior'], true);
  assert.equal(vae['latent_channels'], 4);
  const encoder = parsePyLiteral(metadata['encoder']!) as PyDict;
  const modules = encoder['module_dict'] as PyDict;
  assert.deepEqual(Object.keys(modules), [
    'enc_channels_to_last',
    'enc_patch_emb',
    'enc_posemb_module',
    'enc_register_module',
    'enc_seq_packer',
    'enc_transformer',
    'enc_unpacker',
    'enc_to_latents',
  ]);
  const transformer = modules['enc_transformer'] as PyDict;
  assert.equal(transformer['mlp_ratio'], 4);
  assert.equal(transformer['gated_mlp'], true);
  assert.deepEqual((modules['enc_patch_emb'] as PyDict)['patch_sizes'], [2, 2]);
  assert.deepEqual((modules['enc_seq_packer'] as PyDict)['input_list_read_keys'], ['enc_vae_latents_patched', 'enc_registers']);
  const perSample = (modules['enc_channels_to_last'] as PyDict)['per_sample_op'] as PyDict;
  assert.equal(perSample['_partial_'], true);
  const regularizer = parsePyLiteral(metadata['regularizer']!) as PyDict;
  assert.deepEqual(regularizer['levels'], [8, 5, 5, 5]);
  assert.equal(regularizer['drop_quant_p'], 0);
});

test('scalars: ints, floats, exponents, signs, special floats, bools, None', () => {
  assert.equal(parsePyLiteral('42'), 42);
  assert.equal(parsePyLiteral('-7'), -7);
  assert.equal(parsePyLiteral('+3'), 3);
  assert.equal(parsePyLiteral('- 2'), -2);
  assert.equal(parsePyLiteral('1e-05'), 1e-5);
  assert.equal(parsePyLiteral('-1.5E+3'), -1500);
  assert.equal(parsePyLiteral('.5'), 0.5);
  assert.equal(parsePyLiteral('5.'), 5);
  assert.equal(parsePyLiteral('0.0001'), 0.0001);
  assert.equal(parsePyLiteral('1_000'), 1000);
  assert.equal(parsePyLiteral('0'), 0);
  assert.ok(Object.is(parsePyLiteral('-0.0'), -0));
  assert.equal(parsePyLiteral('inf'), Infinity);
  assert.equal(parsePyLiteral('-inf'), -Infinity);
  assert.ok(Number.isNaN(parsePyLiteral('nan')));
  assert.equal(parsePyLiteral('123456789012345678901234567890'), 123456789012345678901234567890n);
  assert.equal(parsePyLiteral('-9007199254740993'), -9007199254740993n);
  assert.equal(parsePyLiteral('True'), true);
  assert.equal(parsePyLiteral('False'), false);
  assert.equal(parsePyLiteral('None'), null);
  assert.equal(parsePyLiteral('  \n 3 \n'), 3);
});

test('strings: both quotes and Python escapes', () => {
  assert.equal(parsePyLiteral(`'it\\'s'`), "it's");
  assert.equal(parsePyLiteral(`"say \\"hi\\""`), 'say "hi"');
  assert.equal(parsePyLiteral(`"it's"`), "it's");
  assert.equal(parsePyLiteral(`'a\\nb\\tc\\\\d'`), 'a\nb\tc\\d');
  assert.equal(parsePyLiteral(`'\\x41\\u00e9\\U0001F600\\101\\0'`), 'Aé😀A\0');
  assert.equal(parsePyLiteral(`'C:\\d'`), 'C:\\d', 'unknown escapes are kept');
  assert.equal(parsePyLiteral(`'ünïcødé'`), 'ünïcødé');
  assert.equal(parsePyLiteral(`''`), '');
});

test('containers: nested dicts, lists, tuples, trailing commas, empty ones', () => {
  assert.deepEqual(parsePyLiteral(`{'a': [1, (2, 3), (4,), ()], 'b': {'c': None}, 'd': [],}`), {
    a: [1, [2, 3], [4], []],
    b: { c: null },
    d: [],
  });
  assert.deepEqual(parsePyLiteral('(5)'), 5, 'parentheses without a comma are grouping');
  assert.deepEqual(parsePyLiteral('((1, 2),)'), [[1, 2]]);
  assert.deepEqual(parsePyLiteral('{}'), {});
  assert.deepEqual(parsePyLiteral('[\n  1,\n  2,\n]'), [1, 2]);
  assert.deepEqual(parsePyLiteral(`{1: 'a', None: 'b', True: 'c', (1, 2): 'd'}`), { '1': 'a', None: 'b', True: 'c', '(1, 2)': 'd' });
  const asMap = parsePyLiteral(`{'z': 1, 2: 'two', '0': 0}`, { dictsAsMaps: true }) as Map<unknown, unknown>;
  assert.ok(asMap instanceof Map);
  assert.deepEqual([...asMap.keys()], ['z', 2, '0'], 'Maps keep key order and type');
  const proto = parsePyLiteral(`{'__proto__': 1}`) as PyDict;
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.equal(proto['__proto__'], 1);
  assert.deepEqual(Object.keys(proto), ['__proto__']);
});

test('anything that is not a literal is an error with position and snippet', () => {
  const cases: Array<[string, RegExp]> = [
    [`{'a': foo}`, /name 'foo' is not a literal at line 1, column 7 \(offset 6\):\n  \{'a': foo\}\n        \^/],
    [`{'a': os.system('x')}`, /name 'os' is not a literal at line 1, column 7/],
    [`print(1)`, /call of 'print' is not a literal at line 1, column 1/],
    [`float('inf')`, /call of 'float' is not a literal/],
    [`1 + 2`, /operator '\+' is not allowed in a literal at line 1, column 3/],
    [`[1, 2 * 3]`, /operator '\*' is not allowed/],
    [`{1, 2}`, /sets are not supported/],
    [`b'abc'`, /string prefix 'b' is not supported/],
    [`'abc`, /unterminated string at line 1, column 1/],
    [`[1, 2`, /expected ',' or '\]' but found end of input/],
    [`{'a' 1}`, /expected ':' after the dict key but found '1'/],
    [`{'a': 1} x`, /unexpected name 'x' after the value/],
    [`[1] [2]`, /unexpected '\[' after the value/],
    [``, /empty input, expected a value/],
    [`1j`, /complex numbers are not supported/],
    [`0x10`, /hexadecimal, octal and binary integers are not supported/],
    [`012`, /leading zeros in a decimal integer are not allowed/],
    [`1.2.3`, /malformed number/],
    [`1e`, /malformed exponent/],
    [`-'a'`, /expected a number after '-'/],
    [`{[1]: 2}`, /dict key must be a str, number, bool, None or tuple/],
    [`'''doc'''`, /triple-quoted strings are not supported/],
    [`'a' 'b'`, /implicit concatenation of strings is not supported/],
    [`lambda: 0`, /name 'lambda' is not a literal/],
    [`{'a':\n  1 +\n  2}`, /operator '\+' is not allowed in a literal at line 2, column 5/],
    ['['.repeat(1000), /nesting deeper than 500 levels/],
  ];
  for (const [text, pattern] of cases) {
    assert.throws(() => parsePyLiteral(text), (err: unknown) => {
      assert.ok(err instanceof PyLiteralError, `${text}: ${String(err)}`);
      assert.match(err.message, pattern, text);
      return true;
    });
  }
  const long = `{'key': 'a long string value here', 'other': undefined_name, 'more': 'values after this point'}`;
  assert.throws(() => parsePyLiteral(long), /name 'undefined_name'.*\n  … string value here', 'other': undefined_name, 'more': 'value…\n {33}\^$/);
});
