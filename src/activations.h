// activations.h — activation functions and their derivatives, shared by every layer (MLP, conv, gated
// norms, Mamba-2 dt, log-linear λ), plus a vectorised e^x. Header-only so everything inlines.
//
// Why vectors: glibc's expf is a scalar call that GCC cannot vectorise without -ffast-math (which we do
// not use: finite-math semantics stay), and the attention softmax, SiLU and sigmoid evaluate billions
// of exponentials per step. act_vexp computes ACT_VL lanes at once with GCC vector extensions: 8 lanes
// when AVX is enabled (-march=native), 4 SSE lanes otherwise (so there is never an ABI mismatch).
// Cephes-style: x = n·ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r, 2^n put into the
// exponent bits. Max error < 1 ulp over [−87.3, 88.7] (measured in tests/test_ops.c). IEEE edge cases
// are kept: NaN → NaN, x > ln(FLT_MAX) → +inf, −inf → 0; results below FLT_MIN (x < −87.34, the denormal
// range) are flushed to 0.
//
// The scalar functions run the same vector code on one lane, so a vector loop and its scalar tail
// round identically (bit-for-bit the same results whatever the element position).
//
// Loop pattern for kernels (one loop, padded tail):
//     for (int64_t i = 0; i < n; i += ACT_VL) {
//         int m = n - i < ACT_VL ? (int)(n - i) : ACT_VL;
//         act_vstore_n(y + i, act_vsilu(act_vload_n(x + i, m)), m);
//     }
#ifndef LL_ACTIVATIONS_H
#define LL_ACTIVATIONS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __AVX__
#define ACT_VL 8
#else
#define ACT_VL 4
#endif
typedef float act_vf __attribute__((vector_size(4 * ACT_VL)));
typedef int32_t act_vi __attribute__((vector_size(4 * ACT_VL)));

// ---- vector plumbing ---------------------------------------------------------------------------------
static inline act_vf act_vload(const float *p) {
    act_vf v;
    memcpy(&v, p, sizeof v);  // unaligned load
    return v;
}
static inline void act_vstore(float *p, act_vf v) { memcpy(p, &v, sizeof v); }
// The first m (1..ACT_VL) lanes from p, the rest `pad`.
static inline act_vf act_vload_pad(const float *p, int m, float pad) {
    if (m == ACT_VL) return act_vload(p);
    act_vf v = pad - (act_vf){0};
    memcpy(&v, p, (size_t)m * sizeof(float));
    return v;
}
// The first m (1..ACT_VL) lanes from p, the rest 0.
static inline act_vf act_vload_n(const float *p, int m) { return act_vload_pad(p, m, 0.0f); }
// Stores the first m (1..ACT_VL) lanes.
static inline void act_vstore_n(float *p, act_vf v, int m) {
    if (m == ACT_VL) act_vstore(p, v);
    else memcpy(p, &v, (size_t)m * sizeof(float));
}
static inline act_vf act_vsplat(float x) { return x - (act_vf){0}; }  // scalar op vector broadcasts
// m ? a : b per lane (m is a comparison result: all ones or all zeros)
static inline act_vf act_vselect(act_vi m, act_vf a, act_vf b) {
    return (act_vf)((m & (act_vi)a) | (~m & (act_vi)b));
}
// Lane sum in a fixed order (deterministic).
static inline float act_hsum(act_vf v) {
    float s = 0.0f;
    for (int i = 0; i < ACT_VL; i++) s += v[i];
    return s;
}

// ---- the one e^x polynomial --------------------------------------------------------------------------
// Written once as macros that work on float and on act_vf alike (the same operations in the same order,
// so a lane of act_vexp and the scalar scan_exp of ssd_chunk.h round identically):
//   ACT_EXP_SHIFTED(x) = x·log2 e + 1.5·2^23: n = round(x·log2 e) held in the low mantissa bits
//   ACT_EXP_REDUCE(x, n) = x − n·ln2, ln2 split in two so that n·ln2_hi is exact
//   ACT_EXP_POLY(r) = e^r for |r| <= ln2/2 (Cephes' expf polynomial); r must be a plain variable
#define ACT_EXP_MAGIC 12582912.0f
#define ACT_EXP_SHIFTED(x) ((x) * 1.44269504088896341f + ACT_EXP_MAGIC)
#define ACT_EXP_REDUCE(x, n) ((x) - (n) * 0.693359375f + (n) * 2.12194440e-4f)
#define ACT_EXP_POLY(r)                                                                                      \
    ((((((1.9875691500e-4f * (r) + 1.3981999507e-3f) * (r) + 8.3334519073e-3f) * (r) + 4.1665795894e-2f) * \
          (r) + 1.6666665459e-1f) * (r) + 5.0000001201e-1f) * (r) * (r) + (r) + 1.0f)

// ---- e^x, σ, SiLU on vectors ------------------------------------------------------------------------
static inline act_vf act_vexp(act_vf x) {
    // Clamp so n stays in [−126, 128]; a NaN lane fails both comparisons and stays NaN.
    act_vf xc = act_vselect(x > 88.72283935546875f, act_vsplat(88.72283935546875f), x);
    xc = act_vselect(xc < -87.5f, act_vsplat(-87.5f), xc);
    act_vf t = ACT_EXP_SHIFTED(xc);
    act_vf n = t - ACT_EXP_MAGIC;
    act_vi ni = (act_vi)t - 0x4B400000;
    act_vf r = ACT_EXP_REDUCE(xc, n);
    act_vf er = ACT_EXP_POLY(r);
    // 2^n as 2^k · 2^(n−k), k = n/2: both factors are normal floats for every n in [−126, 128].
    act_vi k = ni >> 1;
    act_vf s1 = (act_vf)((k + 127) << 23), s2 = (act_vf)((ni - k + 127) << 23);
    act_vf y = er * s1 * s2;
    y = act_vselect(x > 88.72283935546875f, act_vsplat(INFINITY), y);
    y = act_vselect(x < -87.33654022216797f, act_vsplat(0.0f), y);
    return y;
}

// σ(x) = 1 / (1 + e^−x). For x << 0, e^−x = inf and σ is an exact 0, no NaN.
static inline act_vf act_vsigmoid(act_vf x) { return 1.0f / (1.0f + act_vexp(-x)); }

// silu(x) = x σ(x)  (a.k.a. swish)
static inline act_vf act_vsilu(act_vf x) { return x * act_vsigmoid(x); }

// d silu / dx = σ(x) (1 + x (1 − σ(x)))
static inline act_vf act_vsilu_grad(act_vf x) {
    act_vf s = act_vsigmoid(x);
    return s * (1.0f + x * (1.0f - s));
}

// ---- scalar versions ----------------------------------------------------------------------------------
static inline float act_expf(float x) { return act_vexp(act_vsplat(x))[0]; }
static inline float act_sigmoid(float x) { return act_vsigmoid(act_vsplat(x))[0]; }
static inline float act_silu(float x) { return act_vsilu(act_vsplat(x))[0]; }
static inline float act_silu_grad(float x) { return act_vsilu_grad(act_vsplat(x))[0]; }

// softplus(x) = ln(1 + e^x), returning x itself above 20 like torch.nn.functional.softplus
// (threshold 20) and mamba_ssm's dt kernel. (libm: only called per head/level, not per channel.)
static inline float act_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

// d softplus / dx = σ(x), exactly 1 above the threshold (matching the forward's identity branch).
static inline float act_softplus_grad(float x) { return x > 20.0f ? 1.0f : 1.0f / (1.0f + expf(-x)); }

// ---- array helpers for softmax / logsumexp ------------------------------------------------------------
// y[i] = e^(x[i] − shift) for i < n and returns Σ y (lane partial sums added in a fixed order, so
// deterministic); y may equal x.
static inline float act_exp_shift_sum(float *y, const float *x, int64_t n, float shift) {
    act_vf acc = act_vsplat(0.0f);
    for (int64_t i = 0; i < n; i += ACT_VL) {
        int m = n - i < ACT_VL ? (int)(n - i) : ACT_VL;
        act_vf e = act_vexp(act_vload_pad(x + i, m, -INFINITY) - shift);  // pad lanes give e^−inf = 0
        act_vstore_n(y + i, e, m);
        acc += e;
    }
    return act_hsum(acc);
}

// y[i] = e^(x[i] − shift); y may equal x.
static inline void act_exp_shift(float *y, const float *x, int64_t n, float shift) {
    for (int64_t i = 0; i < n; i += ACT_VL) {
        int m = n - i < ACT_VL ? (int)(n - i) : ACT_VL;
        act_vstore_n(y + i, act_vexp(act_vload_n(x + i, m) - shift), m);
    }
}

// max of x[0..n), ignoring NaNs (a NaN still reaches the exponentials that follow); −inf if n = 0 or
// all are NaN.
static inline float act_max(const float *x, int64_t n) {
    act_vf mv = act_vsplat(-INFINITY);
    int64_t i = 0;
    for (; i + ACT_VL <= n; i += ACT_VL) {
        act_vf v = act_vload(x + i);
        mv = act_vselect(v > mv, v, mv);
    }
    float mx = -INFINITY;
    for (int j = 0; j < ACT_VL; j++) mx = mv[j] > mx ? mv[j] : mx;
    for (int j = 0; j < (int)(n - i); j++) mx = x[i + j] > mx ? x[i + j] : mx;
    return mx;
}

// Index of the largest of x[0..n), the lowest on ties; NaN never wins (0 if all are NaN).
static inline int64_t act_argmax(const float *x, int64_t n) {
    const float mx = act_max(x, n);
    for (int64_t i = 0; i < n; i++)
        if (x[i] == mx) return i;
    return 0;
}

#endif
