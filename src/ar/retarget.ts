// Points a generator at another tokenizer that tokenizes identically (the same frozen encoder with a retrained
// or grown decoder): the generator's tokens mean the same there, so only the recorded tokenizer changes.

import * as path from 'node:path';
import { readCheckpoint, tokenizationDifference } from '../flextok/checkpoint.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { sha256OfFile, tokenizerWeightsFile } from '../io/token_dataset.js';
import { AR_META } from './generator.js';

export interface RetargetResult {
  /** sha256 of the new tokenizer's weights, now recorded in the generator */
  sha256: string;
  /** the path now recorded */
  recordedPath: string;
}

/**
 * Writes `outFile`: the generator `arFile` with its recorded tokenizer changed from `oldTokenizer` (which must be
 * the one it records, by sha256) to `newTokenizer` (which must tokenize identically: see tokenizationDifference).
 * Weights and every other metadata key are copied byte for byte. `recordAs` is the path written into the
 * metadata (default: `newTokenizer` as given).
 */
export function retargetGenerator(arFile: string, oldTokenizer: string, newTokenizer: string, outFile: string, recordAs = newTokenizer): RetargetResult {
  const { metadata, tensors } = readSafetensors(arFile);
  const recordedSha = metadata[AR_META.tokenizerSha256];
  if (!recordedSha) throw new Error(`${arFile}: not a generator with a recorded tokenizer (metadata '${AR_META.tokenizerSha256}')`);
  const oldFile = tokenizerWeightsFile(oldTokenizer);
  const oldSha = sha256OfFile(oldFile);
  if (oldSha !== recordedSha) {
    throw new Error(`${arFile} records the tokenizer ${metadata[AR_META.tokenizer] ?? '?'} (sha256 ${recordedSha.slice(0, 12)}…), not ${oldFile} (sha256 ${oldSha.slice(0, 12)}…): give the tokenizer it was trained on as the old one`);
  }
  const newFile = tokenizerWeightsFile(newTokenizer);
  const why = tokenizationDifference(readCheckpoint(oldFile), readCheckpoint(newFile));
  if (why !== null) throw new Error(`${newFile} does not tokenize as ${oldFile} (${why}): the generator's tokens would mean something else there; train a generator on its tokens instead`);
  const sha256 = sha256OfFile(newFile);
  writeSafetensors(path.resolve(outFile), tensors, { ...metadata, [AR_META.tokenizer]: recordAs, [AR_META.tokenizerSha256]: sha256 });
  return { sha256, recordedPath: recordAs };
}
