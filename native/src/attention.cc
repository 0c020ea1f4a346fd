// placeholder
#include "common.h"
namespace ft {
void attention_forward(const AttentionParams&) {}
void attention_backward(const AttentionParams&) {}
}
