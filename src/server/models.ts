// The models `flextok serve` offers: every folder under models/ with a tokenizer, generator or classifier weights
// file, described from the safetensors header alone (kind, size, token count), and loaded lazily — once, then
// cached — when a request first uses it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Generator } from '../ar/generator.js';
import { AR_CONFIG_KEY, AR_FORMAT, AR_FORMAT_KEY } from '../ar/model.js';
import { parseArModelConfig } from '../ar/config.js';
import { readCheckpointConfig } from '../flextok/checkpoint.js';
import { FlexTok } from '../flextok/model.js';
import { openSafetensors } from '../io/safetensors.js';
import { HttpError } from './http.js';
import { isInside } from './static.js';

export type ModelKind = 'tokenizer' | 'generator' | 'classifier';

/** What GET /api/models says about one model. */
export interface ModelInfo {
  name: string;
  kind: ModelKind;
  /** bytes of the weights file */
  bytes: number;
  /** the weights file, for GET /models/<name>/<file> */
  weights: string;
  /** every servable file of the folder (relative names) */
  files: string[];
  /** tokenizer: R tokens per image; generator: the most tokens it generates */
  num_tokens?: number;
  codebook_size?: number;
  /** tokenizer: [height, width] in pixels (pixel-space models; a VAE model's once loaded) */
  image_size?: [number, number];
  /** tokenizer: image channels (1 grey, 3 RGB) */
  channels?: number;
  /** tokenizer: 'pixel' (no VAE: the tokens describe pixels) or 'vae' (VAE latents) */
  space?: 'pixel' | 'vae';
  /** generator: 'class' or 'text' conditioning, its class names, and the tokenizer it was trained on */
  conditioning?: 'class' | 'text';
  classes?: string[];
  tokenizer?: string;
  /** whether the model is loaded in memory now */
  loaded: boolean;
}

/** Model names are plain folder names. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
/** Extensions of the files served from a model folder. */
export const MODEL_FILE_EXTENSIONS: readonly string[] = ['.safetensors', '.json', '.md', '.png', '.txt'];

interface CachedInfo {
  key: string;
  info: Omit<ModelInfo, 'loaded' | 'files'>;
}

export class ModelRegistry {
  private readonly infoCache = new Map<string, CachedInfo>();
  private readonly tokenizers = new Map<string, FlexTok>();
  private readonly generators = new Map<string, Generator>();

  constructor(
    readonly modelsDir: string,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** Every model folder, sorted by name (folders without a known weights file are left out). */
  list(): ModelInfo[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.modelsDir).filter((n) => NAME_RE.test(n)).sort();
    } catch {
      return [];
    }
    const out: ModelInfo[] = [];
    for (const name of names) {
      const info = this.tryInfo(name);
      if (info !== null) out.push(info);
    }
    return out;
  }

  /** The model `name` (404 when there is none, 400 when it is of another kind than `kind`). */
  info(name: string, kind?: ModelKind): ModelInfo {
    if (!NAME_RE.test(name)) throw new HttpError(400, `'${name.slice(0, 60)}' is not a model name: use a folder name under models/ such as fmnist-default (GET /api/models lists them)`);
    const info = this.tryInfo(name);
    if (info === null) throw new HttpError(404, `unknown model '${name}': ${this.available(kind)}`);
    if (kind !== undefined && info.kind !== kind) throw new HttpError(400, `model '${name}' is a ${info.kind}, not a ${kind}: ${this.available(kind)}`);
    return info;
  }

  /** The tokenizer `name`, loaded on first use. */
  tokenizer(name: string): FlexTok {
    const info = this.info(name, 'tokenizer');
    let model = this.tokenizers.get(name);
    if (model === undefined) {
      model = this.load(name, () => FlexTok.load(path.join(this.modelsDir, name, info.weights)));
      this.tokenizers.set(name, model);
    }
    return model;
  }

  /** The generator `name` with its tokenizer, loaded on first use. */
  generator(name: string): Generator {
    const info = this.info(name, 'generator');
    let gen = this.generators.get(name);
    if (gen === undefined) {
      const file = path.join(this.modelsDir, name, info.weights);
      // A generator records its tokenizer as e.g. "models/fmnist-default": take that folder from this server's models/.
      const recorded = info.tokenizer !== undefined ? /^models\/([A-Za-z0-9][A-Za-z0-9._-]*)\/?$/.exec(info.tokenizer) : null;
      const local = recorded !== null && this.tryInfo(recorded[1]!)?.kind === 'tokenizer' ? path.join(this.modelsDir, recorded[1]!) : undefined;
      gen = this.load(name, () => Generator.load(file, { tokenizer: local }));
      this.generators.set(name, gen);
    }
    return gen;
  }

  private load<T>(name: string, load: () => T): T {
    const started = Date.now();
    try {
      const model = load();
      this.log(`flextok serve: loaded model ${name} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return model;
    } catch (err) {
      this.log(`flextok serve: cannot load model ${name}: ${err instanceof Error ? err.message : String(err)}`);
      throw new HttpError(500, `model '${name}' could not be loaded (the server log says why); fix or replace its folder under models/`);
    }
  }

  private available(kind: ModelKind | undefined): string {
    const models = this.list().filter((m) => kind === undefined || m.kind === kind).map((m) => m.name);
    return models.length ? `available ${kind ?? 'model'}s: ${models.join(', ')}` : `this server has no ${kind ?? 'model'}s (add a folder under models/)`;
  }

  private tryInfo(name: string): ModelInfo | null {
    const dir = path.join(this.modelsDir, name);
    let realDir: string;
    let realRoot: string;
    try {
      realDir = fs.realpathSync(dir);
      realRoot = fs.realpathSync(this.modelsDir);
    } catch {
      return null;
    }
    // A folder that is a link to somewhere outside models/ is not offered (its files would not be served either).
    if (!isInside(realRoot, realDir) || !fs.statSync(realDir).isDirectory()) return null;
    const weights = ['model.safetensors', 'classifier.safetensors'].find((f) => fs.existsSync(path.join(realDir, f)));
    if (weights === undefined) return null;
    const file = path.join(realDir, weights);
    const stat = fs.statSync(file);
    const key = `${stat.size}:${stat.mtimeMs}`;
    let cached = this.infoCache.get(name);
    if (cached === undefined || cached.key !== key) {
      const described = describe(name, file, weights, stat.size);
      if (described === null) return null;
      cached = { key, info: described };
      this.infoCache.set(name, cached);
    }
    const loadedTok = this.tokenizers.get(name);
    const info: ModelInfo = { ...cached.info, files: servableFiles(realDir), loaded: loadedTok !== undefined || this.generators.has(name) };
    if (loadedTok !== undefined) info.image_size = loadedTok.imageSize;
    return info;
  }
}

/** The files of a model folder that GET /models/<name>/<file> serves. */
function servableFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.startsWith('.') && MODEL_FILE_EXTENSIONS.includes(path.extname(e.name).toLowerCase()))
    .map((e) => e.name)
    .sort();
}

/** A model's description from its safetensors header, or null when the file is not one of ours. */
function describe(name: string, file: string, weights: string, bytes: number): CachedInfo['info'] | null {
  let metadata: Record<string, string>;
  try {
    const st = openSafetensors(file);
    metadata = st.metadata;
    st.close();
  } catch {
    return null;
  }
  const base = { name, bytes, weights };
  if (weights === 'classifier.safetensors') return { ...base, kind: 'classifier' };
  try {
    if (metadata[AR_FORMAT_KEY] === AR_FORMAT && metadata[AR_CONFIG_KEY] !== undefined) {
      const cfg = parseArModelConfig(JSON.parse(metadata[AR_CONFIG_KEY]), file);
      const names = metadata.flextok_ar_class_names ? (JSON.parse(metadata.flextok_ar_class_names) as unknown) : null;
      const classes = Array.isArray(names) && names.length === cfg.num_classes && names.every((n) => typeof n === 'string')
        ? (names as string[])
        : Array.from({ length: cfg.num_classes }, (_, i) => `class ${i}`);
      return {
        ...base,
        kind: 'generator',
        num_tokens: cfg.num_tokens,
        codebook_size: cfg.vocab_size,
        conditioning: cfg.text ? 'text' : 'class',
        ...(cfg.text ? {} : { classes }),
        ...(metadata.flextok_ar_tokenizer ? { tokenizer: metadata.flextok_ar_tokenizer } : {}),
      };
    }
    const cfg = readCheckpointConfig(file);
    const pixel = cfg.vae.kind === 'identity';
    const { max_sizes, patch_sizes, n_registers } = cfg.encoder;
    return {
      ...base,
      kind: 'tokenizer',
      num_tokens: n_registers,
      codebook_size: cfg.fsqLevels.reduce((a, b) => a * b, 1),
      channels: pixel ? cfg.vae.latentChannels : 3,
      space: pixel ? 'pixel' : 'vae',
      ...(pixel ? { image_size: [max_sizes[0] * patch_sizes[0], max_sizes[1] * patch_sizes[1]] as [number, number] } : {}),
    };
  } catch {
    return null;
  }
}
