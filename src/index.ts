// The public API of the flextok package: the FlexTok model, checkpoint loading, image IO, the hub
// downloader, the parity runner and the tensor engine.
export * from './tensor/index.js';

export {
  FlexTok,
  FlexTokInputError,
  type AutoencodeOptions,
  type DecodeResult,
  type DetokenizeOptions,
  type EncodeResult,
  type FlexTokLoadOptions,
  type TokenizeOptions,
} from './flextok/model.js';
export { IdentityLatentCodec, VaeLatentCodec, type LatentCodec } from './flextok/latent_codec.js';
export {
  ALLOWED_TARGETS,
  CheckpointConfigError,
  buildFlexTokConfig,
  checkTargets,
  parseMetadataConfig,
  readCheckpoint,
  readCheckpointConfig,
  resolveVaeFolder,
  type FlexTokConfig,
  type LoadedCheckpoint,
  type VaeSettings,
} from './flextok/checkpoint.js';
export {
  TOKENIZER_PRESETS,
  VAE_PRESETS,
  findTokenizerPreset,
  findVaePreset,
  resolveModelPath,
  type TokenizerPreset,
  type VaePreset,
} from './flextok/presets.js';
export { FSQ } from './flextok/fsq.js';
export { RegisterEncoder } from './flextok/encoder.js';
export { FlowDecoder } from './flextok/decoder.js';
export { detokenizeLatents } from './flextok/flow.js';
export { AutoencoderKL, FlexTokVAE, parseAutoencoderKLConfig, type AutoencoderKLConfig } from './flextok/vae.js';
export type { DecoderConfig, EncoderConfig } from './flextok/tokenizer_config.js';
export { WeightLoadError, WeightMap } from './flextok/weights.js';
export { runParity, runGoldenCase, formatCaseReport, type CaseReport, type ParityReport } from './flextok/parity.js';
export { ImageError, loadImage, saveGrid, saveImage, type LoadImageOptions } from './io/image.js';
export { HubError, defaultCacheRoot, pullRepo, repoCacheDir, type PullOptions, type PullResult } from './io/hub.js';
export { readSafetensors, writeSafetensors, SafetensorsError } from './io/safetensors.js';
