// The FlexTok tokenizer as one object: load an official checkpoint (or a pixel-space one exported by our
// trainer), turn images into 1D token sequences (VAE → register encoder → FSQ) and token prefixes back into
// images (FSQ codes → rectified-flow decoder → VAE); a pixel-space model has the identity in place of the VAE.
import { fs, path } from '../io/node_builtins.js';
import { defaultCacheRoot } from '../io/hub.js';
import { concat, mul, reshape, slice } from '../tensor/ops.js';
import { mixSeed, Rng } from '../tensor/rng.js';
import { noGrad, Tensor } from '../tensor/tensor.js';
import { checkpointFromBytes, readCheckpoint, resolveVaeFolder, type FlexTokConfig, type LoadedCheckpoint } from './checkpoint.js';
import { FlowDecoder } from './decoder.js';
import { RegisterEncoder } from './encoder.js';
import { detokenizeLatents } from './flow.js';
import { FSQ } from './fsq.js';
import { IdentityLatentCodec, VaeLatentCodec, type LatentCodec } from './latent_codec.js';
import { AutoencoderKL, FlexTokVAE, parseAutoencoderKLConfig, type AutoencoderKLConfig } from './vae.js';
import { WeightMap, type Trace } from './weights.js';
import { readTensorFile } from './parity_util.js';

/** A token list, k, image or option the model cannot take; the message says which and why. */
export class FlexTokInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlexTokInputError';
  }
}

export interface FlexTokLoadOptions {
  /** Folders holding VAE hub repositories as `<dir>/<owner>/<name>/` (searched before the defaults). */
  hubDir?: string | string[];
  /** The hub cache root (default `$FLEXTOK_CACHE` or ~/.cache/flextok/hub); also searched for the VAE. */
  cacheRoot?: string;
}

export interface FlexTokBytesOptions {
  /** Names the checkpoint in messages (default '<memory>'). */
  label?: string;
  /** The text of the checkpoint's config.json, for a file whose metadata holds no config. */
  configJson?: string;
}

export interface TokenizeOptions {
  /** Tokenize from a posterior sample (default: the checkpoint's `sample_posterior`) or from the mean (a pixel-space model has no posterior: ignored). */
  samplePosterior?: boolean;
  /** The posterior ε: one [1, C, h, w] per image, or [N, C, h, w] for equal sizes. */
  noise?: Tensor | Tensor[];
  /** Seed for ε when no noise is given (default 0); each image's ε comes from the seed alone. */
  seed?: number;
}

export interface DetokenizeOptions {
  /** Tokens kept per image (default: every given token); one number for all images or one per image. */
  k?: number | number[];
  /** Euler steps (default 20). */
  steps?: number;
  /** Guidance scale (default 7.5; 1 = no guidance). */
  guidance?: number;
  /** Adaptive projected guidance instead of plain CFG (default true). */
  apg?: boolean;
  /** Seed of the initial noise when none is given (default 0); each sequence's noise comes from the seed alone. */
  seed?: number;
  /** The initial noise x at t = 1, one [1, C, h, w] per image (overrides seed and imageSize). */
  noise?: Tensor[];
  /** Scale of the initial noise, drawn or given (default 1; ≥ 0). Below 1 the sampler starts nearer the centre of
   * the noise distribution and draws the likeliest image for the tokens more often, with less variety: a flow's
   * sampling temperature (not in the official code). */
  noiseScale?: number;
  /** Output size in pixels: one side, [height, width], or one [height, width] per image (default: the model's native size). */
  imageSize?: number | [number, number] | Array<[number, number]>;
  /** Called after each Euler step. */
  onStep?: (step: number, total: number) => void;
  /** Receives the sampler's intermediates (detok.step{s}.t / .x.{b} / .v_cond.{b} / .v_uncond.{b}). */
  trace?: Trace;
}

export interface ReconstructOptions {
  /** Euler steps (default 25). */
  steps?: number;
  /** Guidance scale (default 1 = none). */
  guidance?: number;
  /** APG instead of plain CFG when guiding (default false). */
  apg?: boolean;
  /** Seed of the initial noise (default 0). */
  seed?: number;
  /** Scale of the initial noise (default 1; see DetokenizeOptions.noiseScale). */
  noiseScale?: number;
  /** Index of the batch's first image in a larger set (default 0); see reconstruct. */
  firstIndex?: number;
  /** Called after each Euler step of each k (kIndex: position of k in ks). */
  onStep?: (step: number, total: number, kIndex: number) => void;
}

/** The initial noise of image `index` in reconstructions with `seed`: drawn from (seed, index) alone, so it
 * is the same for every k, batch size and tool (demo, eval-tokenizer, the trainer's sample grids). */
export function reconstructionNoise(shape: readonly number[], seed: number, index: number): Tensor {
  return Tensor.randn(shape, new Rng(mixSeed(seed, index)));
}

/** k = 1, 2, 4, …, r (and r itself when it is not a power of two): the token counts of the coarse-to-fine grids. */
export function powerOfTwoKs(r: number): number[] {
  const ks: number[] = [];
  for (let k = 1; k <= r; k *= 2) ks.push(k);
  if (ks[ks.length - 1] !== r) ks.push(r);
  return ks;
}

export interface AutoencodeOptions extends Omit<DetokenizeOptions, 'noise' | 'imageSize' | 'trace'>, Omit<TokenizeOptions, 'noise'> {
  /** The VAE posterior ε (see TokenizeOptions.noise). */
  posteriorNoise?: Tensor | Tensor[];
  /** The decoder's initial noise (see DetokenizeOptions.noise). */
  initNoise?: Tensor[];
}

export interface EncodeResult {
  /** Scaled VAE latents (the images themselves in pixel space), one [1, C, h, w] per image. */
  latents: Tensor[];
  /** Encoder outputs before quantisation, one [1, R, d] per image. */
  encLatents: Tensor[];
  /** FSQ codes, one [1, R, d] per image. */
  codes: Tensor[];
  ids: number[][];
}

export interface DecodeResult {
  /** Final flow latents, one [1, C, h, w] per image. */
  latents: Tensor[];
  /** Decoded images (not clamped), one [1, C, H, W] per image (C = imageChannels: 3 with a VAE). */
  images: Tensor[];
}

/** The diffusers config of a FlexTok VAE built without a hub repository (ml-flextok's VAE_BASE_CFG). */
function baseVaeConfig(latentChannels: number, scalingFactor: number): AutoencoderKLConfig {
  return parseAutoencoderKLConfig(
    {
      _class_name: 'AutoencoderKL',
      act_fn: 'silu',
      block_out_channels: [128, 256, 512, 512],
      down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
      up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
      in_channels: 3,
      out_channels: 3,
      latent_channels: latentChannels,
      layers_per_block: 2,
      norm_num_groups: 32,
      scaling_factor: scalingFactor,
    },
    'the base VAE config',
  );
}

/** Images as a list of [1, C, H, W] tensors (a batch tensor is split; [C, H, W] gets a batch axis). */
function imageList(images: Tensor | Tensor[], channels: number): Tensor[] {
  const list = images instanceof Tensor ? (images.ndim === 4 ? Array.from({ length: images.shape[0]! }, (_, i) => slice(images, 0, i, i + 1)) : [images]) : images;
  return list.map((img, i) => {
    const t = img.ndim === 3 ? reshape(img, [1, ...img.shape]) : img;
    if (t.ndim !== 4 || t.shape[0] !== 1 || t.shape[1] !== channels) {
      const kind = channels === 3 ? 'an RGB image' : channels === 1 ? 'a greyscale image' : `a ${channels}-channel image`;
      throw new FlexTokInputError(`image ${i}: expected ${kind} [1, ${channels}, H, W] (or a batch [N, ${channels}, H, W]), got [${img.shape.join(', ')}]`);
    }
    return t;
  });
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export class FlexTok {
  readonly fsq: FSQ;

  private constructor(
    readonly config: FlexTokConfig,
    /** Images ↔ latents: the VAE, or the identity of a pixel-space model. */
    readonly codec: LatentCodec,
    readonly encoder: RegisterEncoder,
    readonly decoder: FlowDecoder,
    /** The checkpoint file. */
    readonly source: string,
  ) {
    this.fsq = new FSQ(config.fsqLevels);
  }

  /** The VAE (models with one; a pixel-space model has none, see `codec`). */
  get vae(): FlexTokVAE {
    if (!(this.codec instanceof VaeLatentCodec)) throw new FlexTokInputError(`${this.source}: this is a pixel-space model; it has no VAE`);
    return this.codec.vae;
  }

  /** Whether the model works on the images themselves (no VAE). */
  get isPixelSpace(): boolean {
    return this.codec.kind === 'identity';
  }

  /** Channels of the images the model takes and returns (3 with a VAE; the image channels in pixel space). */
  get imageChannels(): number {
    return this.codec.imageChannels;
  }

  /**
   * Loads a checkpoint (`model.safetensors` or a folder holding it). The VAE architecture and scaling factor
   * come from the VAE hub repository the config names (`vae.hf_hub_path`), looked up in `hubDir`, in `hub/`
   * next to the checkpoint, and in the hub cache; its weights come from the checkpoint (`vae.vae.*`) or,
   * when the checkpoint has none, from the repository. A pixel-space checkpoint (vae target
   * `flextok_ts.identity_vae.IdentityVAE`, written by `flextok train-tokenizer`) needs no VAE.
   */
  static load(pathOrDir: string, opts: FlexTokLoadOptions = {}): FlexTok {
    const ckpt = readCheckpoint(pathOrDir);
    const cfg = ckpt.config;
    if (cfg.vae.kind === 'identity') return FlexTok.fromPixelCheckpoint(ckpt);
    const hubDirs = [
      ...(opts.hubDir === undefined ? [] : Array.isArray(opts.hubDir) ? opts.hubDir : [opts.hubDir]),
      path.join(path.dirname(ckpt.file), 'hub'),
      opts.cacheRoot ?? defaultCacheRoot(),
    ];
    const weights = new WeightMap(ckpt.tensors, ckpt.file);
    for (const prefix of cfg.trainingOnlyPrefixes) weights.ignore((name) => name.startsWith(prefix));

    let vaeConfig: AutoencoderKLConfig;
    let vaeFolder: string | null = null;
    if (cfg.vae.hfHubPath !== null) {
      vaeFolder = resolveVaeFolder(cfg.vae.hfHubPath, hubDirs);
      const configPath = path.join(vaeFolder, 'config.json');
      let json: unknown;
      try {
        json = JSON.parse(fs.readFileSync(configPath, 'utf8'));
      } catch (err) {
        throw new Error(`${configPath}: not valid JSON (${(err as Error).message})`);
      }
      vaeConfig = parseAutoencoderKLConfig(json, configPath);
    } else {
      if (cfg.vae.scalingFactor === null) {
        throw new Error(`${ckpt.file}: the VAE has neither a hub repository (vae.hf_hub_path) nor a scaling_factor`);
      }
      vaeConfig = baseVaeConfig(cfg.vae.latentChannels, cfg.vae.scalingFactor);
    }
    if (vaeConfig.latentChannels !== cfg.vae.latentChannels) {
      throw new Error(`${ckpt.file}: the VAE repository has ${vaeConfig.latentChannels} latent channels but the checkpoint config says ${cfg.vae.latentChannels}`);
    }
    let autoencoder: AutoencoderKL;
    const hasVaeWeights = [...ckpt.tensors.keys()].some((k) => k.startsWith('vae.vae.'));
    if (hasVaeWeights || vaeFolder === null) {
      autoencoder = new AutoencoderKL(vaeConfig, weights, 'vae.vae.');
    } else {
      // The checkpoint leaves the VAE to its hub repository (the official loader keeps those weights).
      const file = path.join(vaeFolder, 'diffusion_pytorch_model.safetensors');
      if (!fs.existsSync(file)) throw new Error(`${vaeFolder}: diffusion_pytorch_model.safetensors not found (the checkpoint has no VAE weights)`);
      const vaeWeights = new WeightMap(readTensorFile(file), file);
      autoencoder = new AutoencoderKL(vaeConfig, vaeWeights);
      vaeWeights.finish();
    }
    const encoder = RegisterEncoder.load(cfg.encoder, weights);
    const decoder = FlowDecoder.load(cfg.decoder, weights);
    weights.finish();
    const vae = new FlexTokVAE(autoencoder, { scalingFactor: cfg.vae.scalingFactor });
    return new FlexTok(cfg, new VaeLatentCodec(vae), encoder, decoder, ckpt.file);
  }

  /**
   * Loads a pixel-space checkpoint from the bytes of its `model.safetensors` (no file system: the browser
   * build's loader); `label` names it in messages and becomes `source`, `configJson` is the text of its
   * config.json when the file's metadata holds no config. A model with a VAE is refused (its VAE lives in a
   * hub repository the browser build cannot read yet).
   */
  static fromBytes(bytes: Uint8Array, opts: FlexTokBytesOptions = {}): FlexTok {
    const ckpt = checkpointFromBytes(bytes, opts.label ?? '<memory>', opts.configJson);
    if (ckpt.config.vae.kind !== 'identity') {
      throw new FlexTokInputError(`${ckpt.file}: a tokenizer with a VAE is not supported in the browser build yet; load it with FlexTok.load (Node)`);
    }
    return FlexTok.fromPixelCheckpoint(ckpt);
  }

  /** The model of a pixel-space checkpoint (no VAE): encoder and decoder from its tensors. */
  private static fromPixelCheckpoint(ckpt: LoadedCheckpoint): FlexTok {
    const cfg = ckpt.config;
    const weights = new WeightMap(ckpt.tensors, ckpt.file);
    for (const prefix of cfg.trainingOnlyPrefixes) weights.ignore((name) => name.startsWith(prefix));
    const encoder = RegisterEncoder.load(cfg.encoder, weights);
    const decoder = FlowDecoder.load(cfg.decoder, weights);
    weights.finish();
    return new FlexTok(cfg, new IdentityLatentCodec(cfg.vae.latentChannels), encoder, decoder, ckpt.file);
  }

  /** A model from modules already in memory, e.g. a training run's weights (shared, not copied); `source`
   * names them in messages. The config must describe the modules (the trainer builds it with the
   * exporter's officialConfig, so a loaded export and its in-memory model are the same model). */
  static fromModules(config: FlexTokConfig, codec: LatentCodec, encoder: RegisterEncoder, decoder: FlowDecoder, source: string): FlexTok {
    return new FlexTok(config, codec, encoder, decoder, source);
  }

  /** Register tokens per image R (256 for the released models). */
  get numTokens(): number {
    return this.config.encoder.n_registers;
  }

  /** Number of distinct token ids (64,000 for FSQ [8,8,8,5,5,5]). */
  get codebookSize(): number {
    return this.fsq.codebookSize;
  }

  /** Pixels per latent cell (the VAE's downsampling factor; 1 in pixel space). */
  get vaeDownsampling(): number {
    return this.codec.downsamplingFactor;
  }

  /** Image sides must be multiples of this: VAE downsampling × patch size. */
  get pixelsPerPatch(): number {
    return this.vaeDownsampling * Math.max(...this.config.encoder.patch_sizes);
  }

  /** The largest (and native) image size [height, width]: the position table's grid in pixels. */
  get imageSize(): [number, number] {
    const f = this.vaeDownsampling;
    const { max_sizes, patch_sizes } = this.config.encoder;
    return [max_sizes[0] * patch_sizes[0] * f, max_sizes[1] * patch_sizes[1] * f];
  }

  private checkImageSize(h: number, w: number, what: string): void {
    const f = this.vaeDownsampling;
    const [p0, p1] = this.config.encoder.patch_sizes;
    const [maxH, maxW] = this.imageSize;
    if (h % (f * p0) !== 0 || w % (f * p1) !== 0 || h < f * p0 || w < f * p1) {
      throw new FlexTokInputError(`${what}: ${h}×${w} pixels; the sides must be positive multiples of ${f * p0}×${f * p1} (VAE ×${f}, patch ${p0}×${p1})`);
    }
    if (h > maxH || w > maxW) {
      throw new FlexTokInputError(`${what}: ${h}×${w} pixels is larger than this model's ${maxH}×${maxW} (its position table covers ${this.config.encoder.max_sizes.join('×')} patches)`);
    }
  }

  /** VAE → encoder → FSQ with every intermediate (see tokenize). */
  encode(images: Tensor | Tensor[], opts: TokenizeOptions = {}): EncodeResult {
    return noGrad(() => {
      const list = imageList(images, this.imageChannels);
      list.forEach((img, i) => this.checkImageSize(img.shape[2]!, img.shape[3]!, `image ${i}`));
      // The identity has no posterior to sample.
      const samplePosterior = this.codec.kind === 'vae' && (opts.samplePosterior ?? this.config.vae.samplePosterior);
      const noiseList = opts.noise === undefined ? null : imageList4(opts.noise);
      if (noiseList !== null && noiseList.length !== list.length) {
        throw new FlexTokInputError(`${noiseList.length} posterior noise tensors for ${list.length} images`);
      }
      // Without given noise, each image's ε is drawn from the seed alone, so its tokens do not depend on the batch.
      const seed = opts.seed ?? 0;
      const latents: Tensor[] = new Array(list.length);
      let start = 0;
      while (start < list.length) {
        // Images of equal size go through the VAE together, in input order.
        let end = start + 1;
        while (end < list.length && sameShape(list[end]!.shape, list[start]!.shape)) end++;
        const batch = end - start === 1 ? list[start]! : concat(list.slice(start, end), 0);
        let noise: Tensor | undefined;
        if (samplePosterior) {
          const f = this.vaeDownsampling;
          const [, , h, w] = list[start]!.shape;
          const shape = [1, this.config.vae.latentChannels, h! / f, w! / f];
          const parts = noiseList !== null ? noiseList.slice(start, end) : list.slice(start, end).map(() => Tensor.randn(shape, new Rng(seed)));
          noise = parts.length === 1 ? parts[0]! : concat(parts, 0);
        }
        const encoded = this.codec.encode(batch, { samplePosterior, noise });
        for (let i = start; i < end; i++) latents[i] = end - start === 1 ? encoded : slice(encoded, 0, i - start, i - start + 1);
        start = end;
      }
      const encLatents = this.encoder.forward(latents);
      const codes: Tensor[] = [];
      const ids: number[][] = [];
      for (const z of encLatents) {
        const q = this.fsq.quantize(z);
        codes.push(q.codes);
        ids.push(Array.from(q.ids));
      }
      return { latents, encLatents, codes, ids };
    });
  }

  /**
   * Images → token ids: `images` is [N, C, H, W] in [-1, 1] or a list of [1, C, H, W] (C = imageChannels;
   * sizes may differ; multiples of `pixelsPerPatch`, at most `imageSize`). Returns R ids per image, coarse to fine.
   */
  tokenize(images: Tensor | Tensor[], opts: TokenizeOptions = {}): number[][] {
    return this.encode(images, opts).ids;
  }

  /** Checks token lists and k, and returns the keep count per image. */
  private keepCounts(tokens: number[][], k: number | number[] | undefined): number[] {
    const r = this.numTokens;
    const size = this.codebookSize;
    if (!Array.isArray(tokens) || tokens.length === 0) throw new FlexTokInputError('no token sequences to detokenize');
    if (Array.isArray(k) && k.length !== tokens.length) throw new FlexTokInputError(`${k.length} values of k for ${tokens.length} token sequences`);
    return tokens.map((seq, i) => {
      if (!Array.isArray(seq) || seq.length === 0) throw new FlexTokInputError(`token sequence ${i} is empty; it needs 1 to ${r} tokens`);
      if (seq.length > r) throw new FlexTokInputError(`token sequence ${i} has ${seq.length} tokens; this model takes at most ${r}`);
      seq.forEach((id, j) => {
        if (!Number.isInteger(id) || id < 0 || id >= size) {
          throw new FlexTokInputError(`token id ${id} (sequence ${i}, position ${j}) is outside the codebook: valid ids are 0 to ${size - 1}`);
        }
      });
      const ki = k === undefined ? seq.length : Array.isArray(k) ? k[i]! : k;
      if (!Number.isInteger(ki) || ki < 1 || ki > r) throw new FlexTokInputError(`k = ${ki} for sequence ${i}: k must be an integer from 1 to ${r}`);
      if (ki > seq.length) throw new FlexTokInputError(`k = ${ki} for sequence ${i}, but it has only ${seq.length} tokens`);
      return ki;
    });
  }

  /** The latent sizes [h, w] of the outputs. */
  private latentSizes(n: number, imageSize: DetokenizeOptions['imageSize']): Array<[number, number]> {
    const f = this.vaeDownsampling;
    let sizes: Array<[number, number]>;
    if (imageSize === undefined) sizes = new Array(n).fill(this.imageSize);
    else if (typeof imageSize === 'number') sizes = new Array(n).fill([imageSize, imageSize]);
    else if (imageSize.length === 2 && typeof imageSize[0] === 'number') sizes = new Array(n).fill(imageSize as [number, number]);
    else sizes = imageSize as Array<[number, number]>;
    if (sizes.length !== n) throw new FlexTokInputError(`${sizes.length} image sizes for ${n} token sequences`);
    return sizes.map(([h, w], i) => {
      this.checkImageSize(h, w, `output size of sequence ${i}`);
      return [h / f, w / f];
    });
  }

  /** Token ids → flow latents and decoded images (see detokenize). */
  decode(tokens: number[][], opts: DetokenizeOptions = {}): DecodeResult {
    return noGrad(() => {
      const keepK = this.keepCounts(tokens, opts.k);
      const r = this.numTokens;
      const c = this.config.vae.latentChannels;
      let initNoise: Tensor[];
      if (opts.noise !== undefined) {
        if (opts.noise.length !== tokens.length) throw new FlexTokInputError(`${opts.noise.length} initial noise tensors for ${tokens.length} token sequences`);
        initNoise = opts.noise.map((x, i) => {
          if (x.ndim !== 4 || x.shape[0] !== 1 || x.shape[1] !== c) throw new FlexTokInputError(`initial noise ${i}: expected [1, ${c}, h, w], got [${x.shape.join(', ')}]`);
          const f = this.vaeDownsampling;
          this.checkImageSize(x.shape[2]! * f, x.shape[3]! * f, `initial noise ${i}`);
          return x;
        });
      } else {
        // Each sequence's noise is drawn from the seed alone, so its image does not depend on the batch.
        const seed = opts.seed ?? 0;
        initNoise = this.latentSizes(tokens.length, opts.imageSize).map(([h, w]) => Tensor.randn([1, c, h, w], new Rng(seed)));
      }
      const noiseScale = opts.noiseScale ?? 1;
      if (!Number.isFinite(noiseScale) || noiseScale < 0) throw new FlexTokInputError(`noise scale must be a number ≥ 0, got ${noiseScale}`);
      if (noiseScale !== 1) initNoise = initNoise.map((x) => mul(x, noiseScale));
      const steps = opts.steps ?? 20;
      if (!Number.isInteger(steps) || steps < 1) throw new FlexTokInputError(`steps must be a positive integer, got ${steps}`);
      const guidance = opts.guidance ?? 7.5;
      if (!Number.isFinite(guidance)) throw new FlexTokInputError(`guidance must be a number, got ${guidance}`);
      const codes = tokens.map((seq, i) => this.fsq.paddedCodes(seq.slice(0, keepK[i]), r));
      const latents = detokenizeLatents(this.decoder, codes, keepK, {
        steps,
        guidanceScale: guidance,
        apg: opts.apg ?? true,
        initNoise,
        onStep: opts.onStep,
        trace: opts.trace,
      });
      const images: Tensor[] = new Array(latents.length);
      let start = 0;
      while (start < latents.length) {
        let end = start + 1;
        while (end < latents.length && sameShape(latents[end]!.shape, latents[start]!.shape)) end++;
        const decoded = this.codec.decode(end - start === 1 ? latents[start]! : concat(latents.slice(start, end), 0));
        for (let i = start; i < end; i++) images[i] = end - start === 1 ? decoded : slice(decoded, 0, i - start, i - start + 1);
        start = end;
      }
      return { latents, images };
    });
  }

  /**
   * Token ids → images [N, C, H, W] (not clamped; [-1, 1] is the displayable range). Each sequence has 1 to R
   * ids; the first k are kept (default all) and the rest of the R slots are masked, as in the official code.
   * Sampling: Euler with `steps`, guidance `guidance` (APG by default) from seeded or given noise.
   * Every output must have the same size (see decodeImages for mixed sizes).
   */
  detokenize(tokens: number[][], opts: DetokenizeOptions = {}): Tensor {
    const images = this.decode(tokens, opts).images;
    if (images.some((img) => !sameShape(img.shape, images[0]!.shape))) {
      throw new FlexTokInputError('the outputs have different sizes; use decodeImages() for a list of images');
    }
    return images.length === 1 ? images[0]! : noGrad(() => concat(images, 0));
  }

  /** Token ids → one [1, C, H, W] image per sequence (sizes may differ). */
  decodeImages(tokens: number[][], opts: DetokenizeOptions = {}): Tensor[] {
    return this.decode(tokens, opts).images;
  }

  /** tokenize then detokenize at the input sizes with the first k tokens (a batch tensor in, a batch tensor out). */
  autoencode(images: Tensor, opts?: AutoencodeOptions): Tensor;
  autoencode(images: Tensor[], opts?: AutoencodeOptions): Tensor[];
  autoencode(images: Tensor | Tensor[], opts: AutoencodeOptions = {}): Tensor | Tensor[] {
    const list = imageList(images, this.imageChannels);
    const ids = this.tokenize(list, { samplePosterior: opts.samplePosterior, noise: opts.posteriorNoise, seed: opts.seed });
    const out = this.decodeImages(ids, {
      k: opts.k,
      steps: opts.steps,
      guidance: opts.guidance,
      apg: opts.apg,
      seed: opts.seed,
      noise: opts.initNoise,
      noiseScale: opts.noiseScale,
      onStep: opts.onStep,
      imageSize: list.map((img) => [img.shape[2]!, img.shape[3]!] as [number, number]),
    });
    return images instanceof Tensor ? (out.length === 1 ? out[0]! : noGrad(() => concat(out, 0))) : out;
  }

  /**
   * Reconstructions of same-size images [B, C, H, W] from their first k tokens, for each k in `ks`
   * (tokenized once, from the posterior mean): one [B, C, H, W] tensor per k, not clamped. Image i starts
   * from the noise of reconstructionNoise(seed, firstIndex + i), the same for every k, so a batch's
   * results do not depend on how the images were batched. Defaults: 25 steps, guidance 1 (none).
   */
  reconstruct(images: Tensor, ks: readonly number[], opts: ReconstructOptions = {}): Tensor[] {
    if (images.ndim !== 4) throw new FlexTokInputError(`reconstruct: expected images [B, C, H, W], got [${images.shape.join(', ')}]`);
    const [b, , h, w] = images.shape as [number, number, number, number];
    const ids = this.tokenize(images, { samplePosterior: false });
    const f = this.vaeDownsampling;
    const noise = Array.from({ length: b }, (_, i) => reconstructionNoise([1, this.config.vae.latentChannels, h / f, w / f], opts.seed ?? 0, (opts.firstIndex ?? 0) + i));
    const onStep = opts.onStep;
    return ks.map((k, j) => this.detokenize(ids, {
      k, steps: opts.steps ?? 25, guidance: opts.guidance ?? 1, apg: opts.apg ?? false, noise, noiseScale: opts.noiseScale,
      onStep: onStep && ((step, total) => onStep(step, total, j)),
    }));
  }
}

/** Noise given as a batch tensor or a list, as a list of [1, ...] tensors. */
function imageList4(noise: Tensor | Tensor[]): Tensor[] {
  if (!(noise instanceof Tensor)) return noise;
  return Array.from({ length: noise.shape[0]! }, (_, i) => slice(noise, 0, i, i + 1));
}
