// The pure TypeScript kernel backend: the float64 reference and the fallback when no native build exists.
import type { Kernels } from '../kernels.js';
import { attentionBackward, attentionForward } from './attention.js';
import { binary, segmentFmaBackward, segmentFmaForward, unary, unaryBackward } from './elementwise.js';
import { gemm, gemmBf16 } from './gemm.js';
import { col2im, im2col, permute } from './layout.js';
import { groupNormBackward, groupNormForward, layerNormBackward, layerNormForward, rmsNormBackward, rmsNormForward } from './norm.js';
import { adamw } from './optim.js';
import { logSoftmaxBackward, logSoftmaxForward, max, softmaxBackward, softmaxForward, sum } from './reduce.js';

export const jsKernels: Kernels = {
  name: 'js',
  gemm,
  gemmBf16,
  attentionForward,
  attentionBackward,
  unary,
  unaryBackward,
  binary,
  sum,
  max,
  softmaxForward,
  softmaxBackward,
  logSoftmaxForward,
  logSoftmaxBackward,
  segmentFmaForward,
  segmentFmaBackward,
  layerNormForward,
  layerNormBackward,
  rmsNormForward,
  rmsNormBackward,
  groupNormForward,
  groupNormBackward,
  im2col,
  col2im,
  permute,
  adamw,
};
