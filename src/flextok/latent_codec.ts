// The image ↔ latent stage of a FlexTok model: the official Stable-Diffusion-style VAE, or the identity of a
// pixel-space model (the tokenizer then works on the images themselves).
import { Tensor } from '../tensor/tensor.js';
import type { FlexTokVAE } from './vae.js';

export interface LatentEncodeOptions {
  /** Latents from a posterior sample (true) or the posterior mean (false); the identity has no posterior. */
  samplePosterior: boolean;
  /** The posterior ε, shaped like the latents [N, C, h, w] (sample path only). */
  noise?: Tensor;
}

/** Images [N, imageChannels, H, W] in [-1, 1] ↔ latents [N, latentChannels, H/f, W/f] (f = downsamplingFactor). */
export interface LatentCodec {
  /** 'vae': a FlexTokVAE; 'identity': pixel space. */
  readonly kind: 'vae' | 'identity';
  /** Channels of the images the codec takes and returns (3 for the VAE). */
  readonly imageChannels: number;
  /** Channels of the latents the tokenizer works on. */
  readonly latentChannels: number;
  /** Image pixels per latent cell (1 for the identity). */
  readonly downsamplingFactor: number;
  encode(images: Tensor, opts: LatentEncodeOptions): Tensor;
  /** Latents → images (not clamped). */
  decode(latents: Tensor): Tensor;
}

/** The official StableDiffusionVAE wrapper: scaled posterior sample / mean, decoded after unscaling. */
export class VaeLatentCodec implements LatentCodec {
  readonly kind = 'vae' as const;

  constructor(readonly vae: FlexTokVAE) {}

  get imageChannels(): number {
    return this.vae.vae.config.inChannels;
  }

  get latentChannels(): number {
    return this.vae.vae.config.latentChannels;
  }

  get downsamplingFactor(): number {
    return this.vae.vae.downsamplingFactor;
  }

  encode(images: Tensor, opts: LatentEncodeOptions): Tensor {
    return this.vae.encode(images, { samplePosterior: opts.samplePosterior, noise: opts.noise }).latents;
  }

  decode(latents: Tensor): Tensor {
    return this.vae.decode(latents);
  }
}

/** Pixel space: latents are the images (`channels` of them); posterior options are ignored. */
export class IdentityLatentCodec implements LatentCodec {
  readonly kind = 'identity' as const;
  readonly downsamplingFactor = 1;

  constructor(readonly channels: number) {
    if (!Number.isInteger(channels) || channels < 1) throw new Error(`IdentityLatentCodec: invalid channel count ${channels}`);
  }

  get imageChannels(): number {
    return this.channels;
  }

  get latentChannels(): number {
    return this.channels;
  }

  encode(images: Tensor, _opts?: LatentEncodeOptions): Tensor {
    if (images.ndim !== 4 || images.shape[1] !== this.channels) {
      throw new Error(`expected images [N, ${this.channels}, H, W], got [${images.shape.join(', ')}]`);
    }
    return images;
  }

  decode(latents: Tensor): Tensor {
    return latents;
  }
}
