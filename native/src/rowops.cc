// placeholder
#include "common.h"
namespace ft {
void unary_forward(UnaryOp, const float*, float*, int64_t) {}
void unary_backward(UnaryOp, const float*, const float*, const float*, float*, int64_t, bool) {}
void binary_broadcast(BinaryOp, const float*, const float*, float*, int, const int64_t*, const int64_t*, const int64_t*) {}
void reduce_sum(const float*, float*, int64_t, int64_t, int64_t) {}
void reduce_max(const float*, float*, int32_t*, int64_t, int64_t, int64_t) {}
void softmax_forward(const float*, float*, int64_t, int64_t) {}
void softmax_backward(const float*, const float*, float*, int64_t, int64_t) {}
void log_softmax_forward(const float*, float*, int64_t, int64_t) {}
void log_softmax_backward(const float*, const float*, float*, int64_t, int64_t) {}
void layer_norm_forward(const float*, const float*, const float*, float*, float*, float*, int64_t, int64_t, float) {}
void layer_norm_backward(const float*, const float*, const float*, const float*, const float*, float*, float*, float*, int64_t, int64_t) {}
void rms_norm_forward(const float*, const float*, float*, float*, int64_t, int64_t, float) {}
void rms_norm_backward(const float*, const float*, const float*, const float*, float*, float*, int64_t, int64_t) {}
void group_norm_forward(const float*, const float*, const float*, float*, float*, float*, int64_t, int64_t, int64_t, int64_t, float) {}
void group_norm_backward(const float*, const float*, const float*, const float*, const float*, float*, float*, float*, int64_t, int64_t, int64_t, int64_t) {}
void im2col(const float*, float*, const ConvGeom&) {}
void col2im(const float*, float*, const ConvGeom&) {}
void permute4(const uint32_t*, uint32_t*, int, const int64_t*, const int*) {}
void adamw(const AdamWParams&) {}
}
