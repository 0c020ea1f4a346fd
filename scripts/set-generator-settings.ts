// Stores chosen sampling settings in a generator file (the defaults `flextok generate` and the demo use), e.g.
// after comparing settings with `flextok eval-generation`; the weights and every other metadata key are kept.
//
//   node --import tsx scripts/set-generator-settings.ts --model runs/ar/model.safetensors --out models/fmnist-ar/model.safetensors \
//     [--cfg S] [--cfg-schedule constant|linear|power-cosine] [--cfg-power P] [--temperature T] [--top-k K] [--top-p P] \
//     [--decoder-steps N] [--decoder-guidance G] [--decoder-apg true|false] [--decoder-noise-scale S] [--dtype F16|BF16|F32]
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { AR_META } from '../src/ar/generator.js';
import { FlexAR, type ArWeightDtype } from '../src/ar/model.js';
import { parseArSampling } from '../src/ar/settings.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' }, out: { type: 'string' }, cfg: { type: 'string' }, 'cfg-schedule': { type: 'string' }, 'cfg-power': { type: 'string' },
    temperature: { type: 'string' }, 'top-k': { type: 'string' }, 'top-p': { type: 'string' }, 'decoder-steps': { type: 'string' },
    'decoder-guidance': { type: 'string' }, 'decoder-apg': { type: 'string' }, 'decoder-noise-scale': { type: 'string' }, dtype: { type: 'string' },
  },
});
if (!values.model || !values.out) {
  console.error('usage: scripts/set-generator-settings.ts --model FILE --out FILE [--cfg S] [--temperature T] [--top-k K] [--top-p P] [--cfg-schedule NAME] [--cfg-power P] [--decoder-steps N] [--decoder-guidance G] [--decoder-apg true|false] [--decoder-noise-scale S] [--dtype F16|BF16|F32]');
  process.exit(2);
}
const model = FlexAR.load(values.model);
const stored = JSON.parse(model.metadata[AR_META.sampling] ?? '{}') as Record<string, unknown>;
const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const changes: Record<string, unknown> = {
  cfg_scale: num(values.cfg), cfg_schedule: values['cfg-schedule'], cfg_power: num(values['cfg-power']), temperature: num(values.temperature),
  top_k: num(values['top-k']), top_p: num(values['top-p']), decoder_steps: num(values['decoder-steps']), decoder_guidance: num(values['decoder-guidance']),
  decoder_apg: values['decoder-apg'] === undefined ? undefined : values['decoder-apg'] === 'true' ? true : values['decoder-apg'] === 'false' ? false : values['decoder-apg'],
  decoder_noise_scale: num(values['decoder-noise-scale']),
};
for (const [k, v] of Object.entries(changes)) if (v !== undefined) stored[k] = v;
const settings = parseArSampling(stored, 'settings');
const dtype = (values.dtype ?? 'F16') as ArWeightDtype;
if (!['F16', 'BF16', 'F32'].includes(dtype)) throw new Error(`--dtype must be F16, BF16 or F32, got ${dtype}`);
const { [AR_META.sampling]: _old, format: _f, flextok_ar_config: _c, ...keep } = model.metadata;
model.save(values.out, { ...keep, [AR_META.sampling]: JSON.stringify(settings) }, { dtype });
console.log(`wrote ${path.resolve(values.out)} (${dtype}) with sampling settings ${JSON.stringify(settings)}`);
