// Points a generator at a tokenizer that tokenizes exactly as the one it was trained on (same encoder, FSQ and
// VAE, bit for bit; e.g. a decoder grown with init.grow_decoder + freeze_encoder), after checking both.
//
//   node --import tsx scripts/retarget-generator.ts --model models/scenes-ar --old OLD_TOKENIZER --new models/scenes-tokenizer \
//     [--record-as models/scenes-tokenizer] [--out models/scenes-ar/model.safetensors]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { retargetGenerator } from '../src/ar/retarget.js';

const { values } = parseArgs({ options: { model: { type: 'string' }, old: { type: 'string' }, new: { type: 'string' }, 'record-as': { type: 'string' }, out: { type: 'string' } } });
if (!values.model || !values.old || !values.new) {
  console.error('usage: scripts/retarget-generator.ts --model GENERATOR --old TOKENIZER_IT_RECORDS --new TOKENIZER [--record-as PATH] [--out FILE]');
  process.exit(2);
}
try {
  if (!fs.existsSync(values.model)) throw new Error(`--model ${values.model}: no such file or folder (give a generator folder or its model.safetensors)`);
  const arFile = fs.statSync(values.model).isDirectory() ? path.join(values.model, 'model.safetensors') : values.model;
  const r = retargetGenerator(arFile, values.old, values.new, values.out ?? arFile, values['record-as'] ?? values.new);
  console.log(`wrote ${values.out ?? arFile}: tokenizer ${r.recordedPath} (sha256 ${r.sha256})`);
} catch (e) {
  console.error(`retarget-generator: ${(e as Error).message}`);
  process.exit(1);
}
