// Golden parity of the VAE stage: runs every case of a golden `vae-*` folder (autoencode with
// intermediates, sample path, decode-only, posterior and GroupNorm probes) and compares each
// tensor of its io.safetensors with ours.

import * as fs from 'node:fs';
import * as path from 'node:path';

import { Tensor, noGrad } from '../tensor/tensor.js';
import { compareTensor, missingResult, type ParityResult, readTensorFile } from './parity_util.js';
import { AutoencoderKL, DiagonalGaussian, FlexTokVAE, parseAutoencoderKLConfig, type AutoencoderKLConfig } from './vae.js';
import { WeightMap } from './weights.js';

/** Golden tolerance of every vae.* tensor. */
export const VAE_PARITY_TOL = 1e-4;

/** io.safetensors entries that are inputs, not outputs to compare. */
export const VAE_GOLDEN_INPUTS: readonly string[] = [
  'vae.in.image',
  'vae.sample.noise',
  'vae.decode2.in.latents',
  'vae.probe.moments',
  'vae.probe.noise',
  'vae.probe.gn.in',
];

/** A golden VAE folder loaded: its diffusers config, the model and the io tensors. */
export interface GoldenVAECase {
  dir: string;
  config: AutoencoderKLConfig;
  vae: FlexTokVAE;
  io: Map<string, Tensor>;
}

/** Read `config.json` (hub_config, else diffusers_config.config), `weights.safetensors` (strict)
 * and `io.safetensors` of a golden `vae-*` folder. */
export function loadGoldenVAECase(dir: string): GoldenVAECase {
  const configPath = path.join(dir, 'config.json');
  const golden = JSON.parse(fs.readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  const diffusersConfig = (golden.diffusers_config as { config?: unknown } | undefined)?.config;
  const hub = golden.hub_config ?? diffusersConfig;
  if (hub === undefined) throw new Error(`${configPath}: neither hub_config nor diffusers_config.config is present`);
  const config = parseAutoencoderKLConfig(hub, `${configPath} (hub_config)`);
  const weightsPath = path.join(dir, 'weights.safetensors');
  const weights = new WeightMap(readTensorFile(weightsPath), weightsPath);
  const model = new AutoencoderKL(config, weights);
  weights.finish();
  return { dir, config, vae: new FlexTokVAE(model), io: readTensorFile(path.join(dir, 'io.safetensors')) };
}

/** Everything our implementation produces for the golden cases, by golden name. */
export function runGoldenVAECase(c: GoldenVAECase): Map<string, Tensor> {
  const input = (name: string): Tensor => {
    const t = c.io.get(name);
    if (!t) throw new Error(`${c.dir}/io.safetensors: input ${name} is missing`);
    return t;
  };
  const produced = new Map<string, Tensor>();
  const record = (name: string, t: Tensor): void => {
    produced.set(name, t);
  };
  noGrad(() => {
    const { vae } = c;
    // Autoencode, mode path (intermediates of encoder, posterior, decoder).
    const image = input('vae.in.image');
    const posterior = vae.posterior(image, record);
    const mode = vae.latentsFrom(posterior, { samplePosterior: false, trace: record });
    record('vae.out.image', vae.decode(mode.latents, record));
    // Encode with a posterior sample, recorded noise.
    vae.latentsFrom(posterior, { samplePosterior: true, noise: input('vae.sample.noise'), trace: record });
    // Decode only.
    if (c.io.has('vae.decode2.in.latents')) record('vae.decode2.out.image', vae.decode(input('vae.decode2.in.latents')));
    // Posterior probe (logvar clamp).
    if (c.io.has('vae.probe.moments')) {
      const probe = new DiagonalGaussian(input('vae.probe.moments'));
      record('vae.probe.mean', probe.mean);
      record('vae.probe.logvar', probe.logvar);
      record('vae.probe.std', probe.std);
      record('vae.probe.var', probe.var);
      record('vae.probe.kl', probe.kl());
      if (c.io.has('vae.probe.noise')) record('vae.probe.sample', probe.sample(input('vae.probe.noise')));
    }
    // GroupNorm probe: the encoder's conv_norm_out (eps 1e-6).
    if (c.io.has('vae.probe.gn.in')) record('vae.probe.gn.out', vae.vae.encoder.conv_norm_out.forward(input('vae.probe.gn.in')));
  });
  return produced;
}

/** Parity of every non-input tensor of a golden VAE folder (in io.safetensors order); a tensor we
 * do not produce is reported as a failure. */
export function vaeParityCases(dir: string, tol = VAE_PARITY_TOL): ParityResult[] {
  const c = loadGoldenVAECase(dir);
  const produced = runGoldenVAECase(c);
  const results: ParityResult[] = [];
  for (const [name, ref] of c.io) {
    if (VAE_GOLDEN_INPUTS.includes(name)) continue;
    const mine = produced.get(name);
    results.push(mine ? compareTensor(name, mine, ref, tol) : missingResult(name, ref.shape, tol));
  }
  return results;
}
