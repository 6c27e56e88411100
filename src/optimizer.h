// optimizer.h — AdamW over the flat parameter buffer, the learning-rate schedule and gradient clipping.
// The optimizer sees the model as one array; per-tensor weight-decay flags come as a mask of ranges.
#ifndef LL_OPTIMIZER_H
#define LL_OPTIMIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} AdamWHyper;

// One AdamW step (PyTorch semantics: decoupled decay p -= lr*wd*p, bias-corrected moments).
// step is 1-based. decay_mask (numel bytes, 1 = decay) may be NULL (decay everything).
void adamw_update(float *params, const float *grads, float *m, float *v, const uint8_t *decay_mask,
                  size_t numel, const AdamWHyper *h, int64_t step);

// Linear warmup over warmup_steps, then cosine from lr to lr*min_ratio at the last step. step is 0-based.
float lr_schedule(int64_t step, int64_t total_steps, int64_t warmup_steps, float lr, float min_ratio);

// L2 norm of the whole gradient, in double, with a deterministic reduction order for a fixed thread count.
// Returns NaN/inf if any gradient is non-finite.
double grad_global_norm(const float *grads, size_t numel);

// Multiplies all gradients by s.
void grad_scale(float *grads, size_t numel, float s);

#endif
