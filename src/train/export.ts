// Export of a trained tokenizer in the official checkpoint layout — `model.safetensors` with the
// official key names (`vae.vae.…`, `encoder.module_dict.…`, `decoder.module_dict.…`) and the Hydra
// config as Python-literal strings in `__metadata__`, one entry per top-level key, as the official
// `save_safetensors(model.state_dict(), path, metadata_dict=config)` writes it — and its loader.
//
// Pixel-space models (no VAE) carry `vae = {'_target_': 'flextok_ts.identity_vae.IdentityVAE', …}`:
// the official code has no such class, so the official loader needs a VAE entry there (or a
// one-line identity module registered under that name: encode/decode return their input, no
// parameters). Our loader, FlexTok.load, maps it to the identity.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildFlexTokConfig, IDENTITY_VAE_TARGET, parseMetadataConfig, type FlexTokConfig } from '../flextok/checkpoint.js';
import { FlowDecoder } from '../flextok/decoder.js';
import { RegisterEncoder } from '../flextok/encoder.js';
import type { DecoderConfig, EncoderConfig } from '../flextok/tokenizer_config.js';
import { AutoencoderKL, FlexTokVAE, parseAutoencoderKLConfig } from '../flextok/vae.js';
import { WeightMap } from '../flextok/weights.js';
import { readSafetensors, toFloat32, writeSafetensors, type TensorData } from '../io/safetensors.js';
import type { PyKey, PyValue } from '../io/pyliteral.js';
import { float32ToFloat16 } from '../tensor/half.js';
import { namedTensors } from '../tensor/module.js';
import { Tensor } from '../tensor/tensor.js';
import type { FlowConfig } from './config.js';
import { pyFloat, toPyStr, type PyWritable } from './pyliteral_write.js';

/** `_target_` of the identity "VAE" of pixel-space models (not an official class; see the module comment). */
export const PIXEL_SPACE_VAE_TARGET = IDENTITY_VAE_TARGET;

const SD_VAE_TARGET = 'flextok.vae_wrapper.StableDiffusionVAE';

export type ExportVae =
  | { kind: 'identity'; channels: number }
  /** hubPath: the VAE's repository id, resolved as `hub/<hubPath>/` next to model.safetensors */
  | { kind: 'vae'; vae: FlexTokVAE; hubPath: string; samplePosterior: boolean };

const perSampleOp = (read: string, write: string, op: 'channels_first_to_last' | 'channels_last_to_first'): PyWritable => ({
  _target_: 'flextok.model.utils.dict_ops.PerSampleOp',
  read_key: read,
  write_key: write,
  per_sample_op: { _target_: `flextok.model.utils.dict_ops.${op}`, _partial_: true },
});

const trunk = (cfg: EncoderConfig | DecoderConfig): Record<string, PyWritable> => ({
  dim: cfg.dim,
  depth: cfg.depth,
  head_dim: cfg.head_dim,
  mlp_ratio: pyFloat(cfg.mlp_ratio),
  qkv_bias: cfg.qkv_bias,
  proj_bias: cfg.proj_bias,
  mlp_bias: cfg.mlp_bias,
  gated_mlp: cfg.gated_mlp,
  qk_norm: cfg.qk_norm,
});

/** The official Hydra config (top-level keys in the official order) of a trained tokenizer. */
export function officialConfig(enc: EncoderConfig, dec: DecoderConfig, fsqLevels: readonly number[], flow: FlowConfig, cfgDropout: number, vae: ExportVae): Record<string, PyWritable> {
  const vaeEntry: PyWritable = vae.kind === 'identity'
    ? {
      _target_: PIXEL_SPACE_VAE_TARGET,
      images_read_key: 'rgb',
      vae_latents_read_key: 'vae_latents_reconst',
      vae_latents_write_key: 'vae_latents',
      images_reconst_write_key: 'images_reconst',
      latent_channels: vae.channels,
    }
    : {
      _target_: SD_VAE_TARGET,
      images_read_key: 'rgb',
      vae_latents_read_key: 'vae_latents_reconst',
      vae_latents_write_key: 'vae_latents',
      images_reconst_write_key: 'images_reconst',
      vae_kl_loss_write_key: 'vae_kl_loss',
      latent_channels: vae.vae.vae.config.latentChannels,
      scaling_factor: pyFloat(vae.vae.scalingFactor),
      dtype_override: 'fp32',
      hf_hub_path: vae.hubPath,
      sample_posterior: vae.samplePosterior,
    };
  const encoder: PyWritable = {
    _target_: 'flextok.model.utils.wrappers.SequentialModuleDictWrapper',
    module_dict: {
      enc_channels_to_last: perSampleOp('vae_latents', 'enc_vae_latents_bhwc', 'channels_first_to_last'),
      enc_patch_emb: {
        _target_: 'flextok.model.preprocessors.patching.PatchEmbedder',
        input_tensor_list_read_key: 'enc_vae_latents_bhwc',
        patches_list_write_key: 'enc_vae_latents_patched',
        n_patches_write_key: 'enc_n_patches',
        patch_sizes: [...enc.patch_sizes],
        channels_in: enc.channels_in,
        dim: enc.dim,
        flatten_patches: false,
      },
      enc_posemb_module: {
        _target_: 'flextok.model.utils.posembs.PositionalEmbeddingAdder',
        read_key: 'enc_vae_latents_patched',
        write_key: 'enc_vae_latents_patched',
        dim: enc.dim,
        max_sizes: [...enc.max_sizes],
        posemb_type: 'sincos',
        posemb_scaling: 'absolute',
      },
      enc_register_module: {
        _target_: 'flextok.model.preprocessors.registers.Registers1D',
        input_tensor_list_read_key: 'enc_vae_latents_patched',
        register_sizes_read_write_key: 'register_sizes',
        registers_write_key: 'enc_registers',
        dim: enc.dim,
        n_min: enc.n_registers,
        n_max: enc.n_registers,
        size_sampling_mode: 'uniform',
        ordering_mode: 'nested',
      },
      enc_seq_packer: {
        _target_: 'flextok.model.preprocessors.flex_seq_packing.BlockWiseSequencePacker',
        input_list_read_keys: ['enc_vae_latents_patched', 'enc_registers'],
        packed_seq_write_key: 'enc_packed_seq',
        block_mask_write_key: 'enc_block_mask',
        inner_packed_shapes_write_key: 'enc_ps_inner',
        outer_packed_shapes_write_key: 'enc_ps_outer',
        mask_mode: enc.mask_mode,
        pad_to_multiple: 128,
      },
      enc_transformer: {
        _target_: 'flextok.model.trunks.transformers.FlexTransformer',
        input_seq_read_key: 'enc_packed_seq',
        output_seq_write_key: 'enc_packed_seq',
        block_mask_read_key: 'enc_block_mask',
        ...trunk(enc),
      },
      enc_unpacker: {
        _target_: 'flextok.model.postprocessors.seq_unpacking.SequenceUnpacker',
        packed_seq_read_key: 'enc_packed_seq',
        inner_seq_write_keys: ['enc_vae_latents_patched', 'enc_registers'],
        inner_packed_shapes_read_key: 'enc_ps_inner',
        outer_packed_shapes_read_key: 'enc_ps_outer',
      },
      enc_to_latents: {
        _target_: 'flextok.model.postprocessors.heads.LinearHead',
        read_key: 'enc_registers',
        write_key: 'enc_registers',
        dim: enc.dim,
        dim_out: enc.dim_out,
        use_mup_readout: false,
        weight_init_style: 'zero',
        dtype_override: null,
      },
    },
  };
  const nullCond: PyWritable = dec.null_cond === 'learned'
    ? {
      _target_: 'flextok.model.preprocessors.nullcond.LearnedNullCond',
      read_write_key: 'dec_registers_proj',
      dim: dec.dim,
      eval_drop_flag_read_key: 'eval_dropout_mask',
      dropout_prob: pyFloat(cfgDropout),
      replace_with_single_token: dec.replace_with_single_token,
    }
    : {
      _target_: 'flextok.model.preprocessors.nullcond.ZeroNullCond',
      read_write_key: 'dec_registers_proj',
      eval_drop_flag_read_key: 'eval_dropout_mask',
      dropout_prob: pyFloat(cfgDropout),
    };
  const decoder: PyWritable = {
    _target_: 'flextok.model.utils.wrappers.SequentialModuleDictWrapper',
    module_dict: {
      dec_from_latents: {
        _target_: 'flextok.model.preprocessors.linear.LinearLayer',
        read_key: 'enc_registers_quant',
        write_key: 'dec_registers_proj',
        dim_in: dec.dim_in,
        dim: dec.dim,
      },
      dec_registers_posemb_module: {
        _target_: 'flextok.model.utils.posembs.PositionalEmbeddingAdder',
        read_key: 'dec_registers_proj',
        write_key: 'dec_registers_proj',
        dim: dec.dim,
        max_sizes: [dec.n_registers],
        posemb_type: 'learnable_sum',
        posemb_scaling: 'absolute',
      },
      dec_nested_dropout: {
        _target_: 'flextok.model.preprocessors.token_dropout.MaskedNestedDropout',
        read_write_key: 'dec_registers_proj',
        dim: dec.dim,
        eval_keep_k_read_key: 'eval_keep_k',
        train_keep_k_write_key: 'train_keep_k',
        size_sampling_mode: flow.nested_dropout_switch?.mode ?? flow.nested_dropout, // the mode training ended with
      },
      dec_latent_dropout: nullCond,
      dec_noise_channels_to_last: perSampleOp('vae_latents_noised', 'vae_latents_noised_bhwc', 'channels_first_to_last'),
      dec_noise_patch_emb: {
        _target_: 'flextok.model.preprocessors.patching.PatchEmbedder',
        input_tensor_list_read_key: 'vae_latents_noised_bhwc',
        patches_list_write_key: 'dec_noised_patched',
        n_patches_write_key: 'dec_n_patches',
        patch_sizes: [...dec.patch_sizes],
        channels_in: dec.channels_in,
        dim: dec.dim,
        flatten_patches: false,
      },
      dec_patches_posemb_module: {
        _target_: 'flextok.model.utils.posembs.PositionalEmbeddingAdder',
        read_key: 'dec_noised_patched',
        write_key: 'dec_patches',
        dim: dec.dim,
        max_sizes: [...dec.max_sizes],
        posemb_type: 'sincos',
        posemb_scaling: 'absolute',
      },
      dec_seq_packer: {
        _target_: 'flextok.model.preprocessors.flex_seq_packing.BlockWiseSequencePacker',
        input_list_read_keys: ['dec_patches', 'dec_registers_proj'],
        packed_seq_write_key: 'dec_packed_seq',
        block_mask_write_key: 'dec_block_mask',
        inner_packed_shapes_write_key: 'dec_ps_inner',
        outer_packed_shapes_write_key: 'dec_ps_outer',
        mask_mode: dec.mask_mode,
        pad_to_multiple: 128,
        emb_packing_fn_write_key: 'dec_emb_packing_fn',
        per_subseq_embs: dec.adaLN_expansion === 2,
      },
      dec_time_embedder: {
        _target_: 'flextok.model.preprocessors.time_embedding.TimestepEmbedder',
        timesteps_read_key: 'timesteps',
        time_embedding_write_key: 'dec_temb',
        dim: dec.dim,
        frequency_embedding_size: dec.frequency_embedding_size,
        max_timestep: pyFloat(dec.max_timestep),
      },
      dec_transformer: {
        _target_: 'flextok.model.trunks.transformers.FlexTransformer',
        input_seq_read_key: 'dec_packed_seq',
        output_seq_write_key: 'dec_packed_seq',
        block_mask_read_key: 'dec_block_mask',
        adaLN_emb_read_key: 'dec_temb',
        adaLN_packing_fn_read_key: 'dec_emb_packing_fn',
        adaLN_expansion: dec.adaLN_expansion,
        ...trunk(dec),
      },
      dec_unpacker: {
        _target_: 'flextok.model.postprocessors.seq_unpacking.SequenceUnpacker',
        packed_seq_read_key: 'dec_packed_seq',
        inner_seq_write_keys: ['dec_patches', 'dec_registers_proj'],
        inner_packed_shapes_read_key: 'dec_ps_inner',
        outer_packed_shapes_read_key: 'dec_ps_outer',
      },
      dec_to_patches: {
        _target_: 'flextok.model.postprocessors.heads.ToPatchesLinearHead',
        read_key: 'dec_patches',
        write_key: 'dec_patches',
        dim: dec.dim,
        channels_out: dec.channels_in,
        patch_sizes: [...dec.patch_sizes],
        use_mup_readout: false,
        weight_init_style: 'zero',
        adaLN_emb_read_key: dec.head_adaLN ? 'dec_temb' : null,
      },
      dec_channels_to_first: perSampleOp('dec_patches', 'vae_latents_reconst', 'channels_last_to_first'),
    },
  };
  return {
    _target_: 'flextok.flextok_wrapper.FlexTok',
    vae: vaeEntry,
    encoder,
    decoder,
    regularizer: {
      _target_: 'flextok.regularizers.quantize_fsq.FSQ',
      latents_read_key: 'enc_registers',
      quants_write_key: 'enc_registers_quant',
      tokens_write_key: 'tokens',
      levels: [...fsqLevels],
      drop_quant_p: pyFloat(0),
      packed_call: true,
    },
    flow_matching_noise_module: {
      _target_: 'flextok.flow_matching.noise_modules.MinRFNoiseModule',
      clean_images_read_key: 'vae_latents',
      noised_images_write_key: 'vae_latents_noised',
      timesteps_write_key: 'timesteps',
      sigmas_write_key: 'sigmas',
      ln: flow.timestep_sampler.ln,
      stratisfied: flow.timestep_sampler.stratified,
      mode_scale: pyFloat(flow.timestep_sampler.mode_scale),
      noise_write_key: 'flow_noise',
      noise_read_key: null,
    },
    pipeline: {
      _target_: 'flextok.flow_matching.pipelines.MinRFPipeline',
      _partial_: true,
      noise_read_key: null,
      target_sizes_read_key: null,
      latents_read_key: 'enc_registers_quant',
      timesteps_read_key: 'timesteps',
      noised_images_read_key: 'vae_latents_noised',
      reconst_write_key: 'vae_latents_reconst',
      out_channels: dec.channels_in,
    },
  };
}

/** The official state_dict of the model: vae.vae.* (if any), encoder.module_dict.*, decoder.module_dict.*. */
export function officialStateDict(encoder: RegisterEncoder, decoder: FlowDecoder, vae: ExportVae): [string, Tensor][] {
  const out: [string, Tensor][] = [];
  if (vae.kind === 'vae') for (const [n, t] of vae.vae.vae.namedParameters()) out.push([`vae.vae.${n}`, t]);
  out.push(...namedTensors(encoder, 'encoder.module_dict'));
  // state_dict order: the head's adaLN_modulation is registered before its proj.
  const dec = namedTensors(decoder, 'decoder.module_dict');
  const isHeadProj = ([n]: [string, Tensor]) => n.startsWith('decoder.module_dict.dec_to_patches.proj.');
  out.push(...dec.filter((e) => !isHeadProj(e)), ...dec.filter(isHeadProj));
  return out;
}

function tensorData(t: Tensor, dtype: 'F32' | 'F16'): TensorData {
  const values = Float32Array.from(t.f);
  return dtype === 'F16' ? { dtype: 'F16', shape: [...t.shape], data: float32ToFloat16(values) } : { dtype: 'F32', shape: [...t.shape], data: values };
}

/** The typed config FlexTok.load would read back from the export of these modules (so an in-memory
 * model of a training run and its loaded export are configured alike). */
export function exportedFlexTokConfig(enc: EncoderConfig, dec: DecoderConfig, fsqLevels: readonly number[], flow: FlowConfig, cfgDropout: number, vae: ExportVae): FlexTokConfig {
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(officialConfig(enc, dec, fsqLevels, flow, cfgDropout, vae))) metadata[k] = toPyStr(v);
  return buildFlexTokConfig(parseMetadataConfig(metadata, 'the exported config'), 'the exported config');
}

/** Write model.safetensors (official layout, atomic). A VAE is also written as a diffusers folder
 * `hub/<hubPath>/` next to the file (config.json + diffusion_pytorch_model.safetensors), where the
 * FlexTok loaders look for the repository named by `vae.hf_hub_path`. */
export function exportTokenizer(file: string, parts: { encoder: RegisterEncoder; decoder: FlowDecoder; fsqLevels: readonly number[]; flow: FlowConfig; cfgDropout: number; vae: ExportVae; dtype: 'F32' | 'F16' }): void {
  const config = officialConfig(parts.encoder.config, parts.decoder.config, parts.fsqLevels, parts.flow, parts.cfgDropout, parts.vae);
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(config)) metadata[k] = toPyStr(v);
  const tensors = new Map<string, TensorData>();
  for (const [name, t] of officialStateDict(parts.encoder, parts.decoder, parts.vae)) tensors.set(name, tensorData(t, parts.dtype));
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  if (parts.vae.kind === 'vae') exportDiffusersVae(path.join(path.dirname(file), 'hub', ...parts.vae.hubPath.split('/')), parts.vae.vae, parts.dtype);
  writeSafetensors(file, tensors, metadata);
}

/** A diffusers AutoencoderKL folder: config.json + diffusion_pytorch_model.safetensors. */
export function exportDiffusersVae(dir: string, vae: FlexTokVAE, dtype: 'F32' | 'F16' = 'F32'): void {
  fs.mkdirSync(dir, { recursive: true });
  const c = vae.vae.config;
  const n = c.blockOutChannels.length;
  const config = {
    _class_name: 'AutoencoderKL',
    _diffusers_version: '0.18.0.dev0',
    act_fn: 'silu',
    block_out_channels: c.blockOutChannels,
    down_block_types: new Array(n).fill('DownEncoderBlock2D'),
    up_block_types: new Array(n).fill('UpDecoderBlock2D'),
    in_channels: c.inChannels,
    out_channels: c.outChannels,
    latent_channels: c.latentChannels,
    layers_per_block: c.layersPerBlock,
    norm_num_groups: c.normNumGroups,
    sample_size: c.sampleSize,
    scaling_factor: vae.scalingFactor,
    mid_block_add_attention: c.midBlockAddAttention,
    use_quant_conv: c.useQuantConv,
    use_post_quant_conv: c.usePostQuantConv,
  };
  const tensors = new Map<string, TensorData>();
  for (const [name, t] of vae.vae.namedParameters()) tensors.set(name, tensorData(t, dtype));
  writeSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), tensors);
  const tmp = path.join(dir, `config.json.tmp-${process.pid}`);
  fs.writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`);
  fs.renameSync(tmp, path.join(dir, 'config.json'));
}
