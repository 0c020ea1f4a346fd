// The sampling settings of a generator — guidance, filters and how its tokens are decoded to images —
// as stored with an exported model (`flextok generate`'s defaults) and validated wherever they come from.

export type CfgScheduleName = 'constant' | 'linear' | 'power-cosine';

export interface ArSamplingConfig {
  /** classifier-free guidance scale on the logits (1 = none) */
  cfg_scale: number;
  cfg_schedule: CfgScheduleName;
  /** exponent of the power-cosine schedule */
  cfg_power: number;
  temperature: number;
  /** 0 = off */
  top_k: number;
  /** 1 = off */
  top_p: number;
  /** Euler steps of the tokenizer's decoder when tokens become images */
  decoder_steps: number;
  /** guidance of the tokenizer's decoder (1 = none) */
  decoder_guidance: number;
  /** with decoder_guidance ≠ 1: adaptive projected guidance (true, the official default) or plain CFG (false) */
  decoder_apg: boolean;
  /** scale of the decoder's initial noise (1 = the official sampler; below 1 fewer, likelier images: see
   * DetokenizeOptions.noiseScale) */
  decoder_noise_scale: number;
}

export const AR_SAMPLING_DEFAULTS: ArSamplingConfig = {
  cfg_scale: 1.5, cfg_schedule: 'constant', cfg_power: 1, temperature: 1, top_k: 0, top_p: 1, decoder_steps: 25, decoder_guidance: 1, decoder_apg: true,
  decoder_noise_scale: 1,
};

/** "guidance G" with its kind, and the noise scale when it is not 1: "guidance 1", "guidance 4 (plain CFG)",
 * "guidance 7.5 (APG)", "guidance 4 (plain CFG), noise scale 0.6". */
export function decoderGuidanceText(s: Pick<ArSamplingConfig, 'decoder_guidance' | 'decoder_apg'> & { decoder_noise_scale?: number }): string {
  const g = s.decoder_guidance === 1 ? 'guidance 1' : `guidance ${s.decoder_guidance} (${s.decoder_apg ? 'APG' : 'plain CFG'})`;
  return s.decoder_noise_scale === undefined || s.decoder_noise_scale === 1 ? g : `${g}, noise scale ${s.decoder_noise_scale}`;
}

const KEYS = Object.keys(AR_SAMPLING_DEFAULTS) as (keyof ArSamplingConfig)[];

/** Validate sampling settings (missing keys take the defaults; unknown keys and bad values are errors naming `where`). */
export function parseArSampling(json: unknown, where = 'sampling'): ArSamplingConfig {
  if (json === undefined || json === null) return { ...AR_SAMPLING_DEFAULTS };
  if (typeof json !== 'object' || Array.isArray(json)) throw new Error(`${where}: expected an object, got ${JSON.stringify(json)}`);
  const obj = json as Record<string, unknown>;
  const unknown = Object.keys(obj).filter((k) => !KEYS.includes(k as keyof ArSamplingConfig) && !k.startsWith('_'));
  if (unknown.length) throw new Error(`${where}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}`);
  const num = (key: keyof ArSamplingConfig, ok: (v: number) => boolean, what: string): number => {
    const v = obj[key] ?? AR_SAMPLING_DEFAULTS[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new Error(`${where}.${key}: expected ${what}, got ${JSON.stringify(v)}`);
    return v;
  };
  const schedule = obj.cfg_schedule ?? AR_SAMPLING_DEFAULTS.cfg_schedule;
  if (schedule !== 'constant' && schedule !== 'linear' && schedule !== 'power-cosine') {
    throw new Error(`${where}.cfg_schedule: expected "constant", "linear" or "power-cosine", got ${JSON.stringify(schedule)}`);
  }
  const apg = obj.decoder_apg ?? AR_SAMPLING_DEFAULTS.decoder_apg;
  if (typeof apg !== 'boolean') throw new Error(`${where}.decoder_apg: expected true or false, got ${JSON.stringify(apg)}`);
  return {
    cfg_scale: num('cfg_scale', (v) => v >= 0, 'a number ≥ 0'),
    cfg_schedule: schedule,
    cfg_power: num('cfg_power', (v) => v > 0, 'a number > 0'),
    temperature: num('temperature', (v) => v > 0, 'a number > 0'),
    top_k: num('top_k', (v) => Number.isInteger(v) && v >= 0, 'an integer ≥ 0 (0 = off)'),
    top_p: num('top_p', (v) => v > 0 && v <= 1, 'a number in (0, 1] (1 = off)'),
    decoder_steps: num('decoder_steps', (v) => Number.isInteger(v) && v >= 1, 'an integer ≥ 1'),
    decoder_guidance: num('decoder_guidance', (v) => v >= 0, 'a number ≥ 0'),
    decoder_apg: apg,
    decoder_noise_scale: num('decoder_noise_scale', (v) => v >= 0, 'a number ≥ 0 (1 = the official sampler)'),
  };
}
