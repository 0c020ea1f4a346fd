// The public surface of stage 2 (autoregressive generation over FlexTok tokens): config, model, sampler.

export {
  type ArHead,
  type ArModelConfig,
  digitsToToken,
  fsqBasis,
  mlpHidden,
  numHeads,
  parseArModelConfig,
  tokenToDigits,
} from './config.js';
export {
  AR_CONFIG_KEY,
  AR_FORMAT,
  AR_FORMAT_KEY,
  ArAttention,
  ArBlock,
  ArCache,
  ArSwiGLU,
  DigitHead,
  FlexAR,
  type ArLossOptions,
  type ArWeightDtype,
} from './model.js';
export {
  applyCfg,
  argmaxIndex,
  cfgScaleAt,
  filterLogits,
  generate,
  type CfgSchedule,
  type FilterOptions,
  type GenerateOptions,
  type GuidanceOptions,
} from './sampling.js';
