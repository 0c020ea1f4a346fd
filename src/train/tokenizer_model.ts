// A trained FlexTok tokenizer held in memory for sampling and evaluation: images → latents (a VAE,
// or the identity for a pixel-space model) → encoder → FSQ codes/ids → rectified-flow decoder with
// the first k tokens → latents → images. Used by the trainer's sample grids and by eval-tokenizer.

import type { FlowDecoder } from '../flextok/decoder.js';
import type { RegisterEncoder } from '../flextok/encoder.js';
import { detokenizeLatents } from '../flextok/flow.js';
import { FSQ } from '../flextok/fsq.js';
import type { FlexTokVAE } from '../flextok/vae.js';
import { concat, slice } from '../tensor/ops.js';
import { mixSeed } from '../io/datasets.js';
import { Rng } from '../tensor/rng.js';
import { noGrad, Tensor } from '../tensor/tensor.js';

/** Images ↔ the latents the tokenizer works on. */
export interface LatentCodec {
  /** 'identity' (pixel space) or 'vae' */
  readonly kind: 'identity' | 'vae';
  /** latent channels C (null: the image channels, for the identity) */
  readonly channels: number | null;
  /** image pixels per latent cell */
  readonly downsampling: number;
  /** images [B, C_img, H, W] in [-1, 1] → latents [B, C, H/f, W/f] (no autograd) */
  encode(images: Tensor, rng?: Rng): Tensor;
  /** latents → images (not clamped) */
  decode(latents: Tensor): Tensor;
}

/** Pixel space: the latent is the image itself. */
export const identityCodec: LatentCodec = {
  kind: 'identity',
  channels: null,
  downsampling: 1,
  encode: (images) => images,
  decode: (latents) => latents,
};

/** A frozen FlexTok VAE (scaled latents; posterior mean unless `samplePosterior`). */
export function vaeCodec(vae: FlexTokVAE, samplePosterior = false): LatentCodec {
  return {
    kind: 'vae',
    channels: vae.vae.config.latentChannels,
    downsampling: vae.vae.downsamplingFactor,
    encode: (images, rng) => noGrad(() => vae.encode(images, { samplePosterior: samplePosterior && rng !== undefined, rng }).latents),
    decode: (latents) => noGrad(() => vae.decode(latents)),
  };
}

export interface ReconstructOptions {
  /** Euler steps (default 25) */
  steps?: number;
  /** guidance scale (default 1 = none) */
  guidance?: number;
  /** APG instead of plain CFG when guiding (default false) */
  apg?: boolean;
  /** seed of the initial noise (default 0) */
  seed?: number;
  /** index of the batch's first image: image i's noise comes from (seed, firstIndex + i) alone, so
   * results do not depend on how images are batched (default 0) */
  firstIndex?: number;
}

/** The rows of a batch [B, ...] as [1, ...] tensors. */
export function splitBatch(x: Tensor): Tensor[] {
  return Array.from({ length: x.shape[0] }, (_, i) => slice(x, 0, i, i + 1));
}

export class TokenizerModel {
  readonly fsq: FSQ;

  constructor(
    readonly encoder: RegisterEncoder,
    readonly decoder: FlowDecoder,
    fsqLevels: readonly number[],
    readonly codec: LatentCodec,
  ) {
    this.fsq = new FSQ(fsqLevels);
  }

  /** Tokens per image R. */
  get numTokens(): number {
    return this.encoder.config.n_registers;
  }

  /** FSQ codes ([1, R, d] per image) and ids (R per image) of images [B, C, H, W]. */
  encode(images: Tensor): { codes: Tensor[]; ids: Int32Array[] } {
    return noGrad(() => {
      const latents = this.codec.encode(images);
      const z = this.encoder.forward(splitBatch(latents));
      const codes = z.map((zi) => this.fsq.quantizeBounded(this.fsq.bound(zi)));
      return { codes, ids: codes.map((c) => this.fsq.codesToIds(c)) };
    });
  }

  /** Images [B, C, H, W] decoded from codes with the first k tokens of each; image i's initial noise
   * comes from (seed, firstIndex + i) alone. */
  decodeCodes(codes: Tensor[], k: number, latentShape: readonly number[], opts: ReconstructOptions = {}): Tensor {
    return noGrad(() => {
      const [, c, h, w] = latentShape;
      const seed = opts.seed ?? 0;
      const first = opts.firstIndex ?? 0;
      const initNoise = codes.map((_, i) => Tensor.randn([1, c, h, w], new Rng(mixSeed(seed, first + i))));
      const latents = detokenizeLatents(this.decoder, codes, codes.map(() => k), {
        steps: opts.steps ?? 25,
        guidanceScale: opts.guidance ?? 1,
        apg: opts.apg ?? false,
        initNoise,
      });
      return this.codec.decode(latents.length === 1 ? latents[0] : concat(latents, 0));
    });
  }

  /** Reconstructions of images [B, C, H, W] at each k (one batch per k). */
  reconstruct(images: Tensor, ks: readonly number[], opts: ReconstructOptions = {}): Tensor[] {
    const { codes } = this.encode(images);
    const [b, , h, w] = images.shape;
    const f = this.codec.downsampling;
    const latentShape = [b, this.decoder.config.channels_in, h / f, w / f];
    return ks.map((k) => this.decodeCodes(codes, k, latentShape, opts));
  }
}

/** k = 1, 2, 4, …, R (and R itself when it is not a power of two). */
export function powerOfTwoKs(r: number): number[] {
  const ks: number[] = [];
  for (let k = 1; k <= r; k *= 2) ks.push(k);
  if (ks[ks.length - 1] !== r) ks.push(r);
  return ks;
}
