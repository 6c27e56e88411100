// init.h — the paper's initialisation rules (architectures.md §2.3, §3.2), shared by the model assembly
// and the mixer families. All draws come from one seeded Rng in a fixed order, so a seed fixes the init.
#ifndef LL_INIT_H
#define LL_INIT_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

void init_normal(float *p, size_t n, float std, Rng *r);   // N(0, std²)
void init_const(float *p, size_t n, float v);
// The residual-output rescale: kaiming-uniform(a=√5) = U(±1/√fan_in), then divided by `divisor`
// (√(2·num_layers) for the paper's models). p is (rows, fan_in).
void init_rescaled_uniform(float *p, int64_t rows, int64_t fan_in, float divisor, Rng *r);
// dt_bias = softplus⁻¹(dt) with dt log-uniform in [dt_min, dt_max], clamped below at dt_floor; one draw
// per head (Mamba-2 and Gated DeltaNet).
void init_dt_bias(float *dt_bias, int H, double dt_min, double dt_max, double dt_floor, Rng *r);

#endif
