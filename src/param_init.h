// param_init.h — the fill rules of the paper's initialisation (doc/architectures.md §2.3, §3.2), shared by model.c
// and the mixer families: N(0, σ²), constants, and mamba_ssm's rescaled kaiming-uniform for residual-output
// projections. Each draws from the one Rng in element order, so the draw order fixes the weights.
#ifndef LL_PARAM_INIT_H
#define LL_PARAM_INIT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "rng.h"

static inline void init_normal(float *p, size_t n, float std, Rng *r) {
    for (size_t i = 0; i < n; i++) p[i] = std * rng_normal(r);
}
static inline void init_const(float *p, size_t n, float v) {
    for (size_t i = 0; i < n; i++) p[i] = v;
}
// kaiming-uniform(√5) = U(±1/√fan_in), divided by `divisor` (√(2·num_layers) under rescale_prenorm_residual).
static inline void init_rescaled_uniform(float *p, int64_t rows, int64_t fan_in, float divisor, Rng *r) {
    float bound = 1.0f / sqrtf((float)fan_in);
    for (int64_t i = 0; i < rows * fan_in; i++) p[i] = (float)((2.0 * rng_uniform(r) - 1.0) * bound) / divisor;
}

// dt_bias = softplus⁻¹(dt) with dt log-uniform in [dt_min, dt_max], floored at dt_floor; one draw per
// head (doc/architectures.md §3.2; Mamba-2 and Gated DeltaNet).
static inline void init_dt_bias(float *dt_bias, int H, double dt_min, double dt_max, double dt_floor, Rng *r) {
    const double lo = log(dt_min), hi = log(dt_max);
    for (int h = 0; h < H; h++) {
        double dt = exp(rng_uniform(r) * (hi - lo) + lo);
        if (dt < dt_floor) dt = dt_floor;
        dt_bias[h] = (float)(dt + log(-expm1(-dt)));   // softplus⁻¹(dt)
    }
}

#endif
