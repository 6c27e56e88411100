// init.c — see init.h.
#include "init.h"

#include <math.h>

void init_normal(float *p, size_t n, float std, Rng *r) {
    for (size_t i = 0; i < n; i++) p[i] = std * rng_normal(r);
}

void init_const(float *p, size_t n, float v) {
    for (size_t i = 0; i < n; i++) p[i] = v;
}

void init_rescaled_uniform(float *p, int64_t rows, int64_t fan_in, float divisor, Rng *r) {
    float bound = 1.0f / sqrtf((float)fan_in);
    for (int64_t i = 0; i < rows * fan_in; i++) p[i] = (float)((2.0 * rng_uniform(r) - 1.0) * bound) / divisor;
}

void init_dt_bias(float *dt_bias, int H, double dt_min, double dt_max, double dt_floor, Rng *r) {
    const double lo = log(dt_min), hi = log(dt_max);
    for (int h = 0; h < H; h++) {
        double dt = exp(rng_uniform(r) * (hi - lo) + lo);
        if (dt < dt_floor) dt = dt_floor;
        dt_bias[h] = (float)(dt + log(-expm1(-dt)));   // softplus⁻¹(dt)
    }
}
