// kernel_util.h — small helpers shared by the chunkwise kernels (ssd_chunk.c, scan_ssd.c, scan_loglinear.c,
// deltanet.c): a branch-free e^x for non-positive exponents, a GEMM that overwrites its output,
// vectorisable dot products / sums with a fixed summation order, and the token span of a chunk.
//
// Files that call scan_exp in their loops are compiled with -fno-trapping-math (Makefile: SCAN_KERNELS):
// with -ftrapping-math GCC refuses to if-convert its clamps and the decay loops stay scalar (~4x slower).
// It only drops the guarantee about FP exception flags; results and NaN propagation are unchanged.
#ifndef LL_KERNEL_UTIL_H
#define LL_KERNEL_UTIL_H

#include <stdint.h>
#include <string.h>

#include <cblas.h>

#include "activations.h"
#include "common.h"

// e^x for x <= 0 (positive x is clamped to 0, x < -87.3 gives ~1e-38 instead of a denormal), within
// 2 ulp of expf: the polynomial of activations.h (bit for bit act_expf of the clamped x, tests/test_ops.c).
// A scalar function, not act_expf, because it must stay branch-free scalar code that the compiler
// vectorizes across the loops calling it (the decay masks need one exp per (i, j) pair of a chunk; a
// one-lane vector call per element would not vectorize), and one power-of-two scale suffices for n in
// [-126, 0].
static inline float scan_exp(float x) {
    x = x > 0.0f ? 0.0f : x;
    x = x < -87.3f ? -87.3f : x;
    const float n = ACT_EXP_SHIFTED(x) - ACT_EXP_MAGIC;
    const float r = ACT_EXP_REDUCE(x, n);
    const float p = ACT_EXP_POLY(r);
    union { int32_t i; float f; } scale = {.i = ((int32_t)n + 127) << 23};  // 2^n; n in [-126, 0]
    return p * scale.f;
}

// C (M×N, row stride ldc) = op(A) op(B). OpenBLAS 0.3.21 clears C for beta = 0 with a slow scalar pass
// (~20% of a 64×64×64 product here), so clear it with memset and accumulate with beta = 1.
static inline void scan_gemm0(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K, const float *A,
                              int lda, const float *B, int ldb, float *C, int ldc) {
    for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, sizeof(float) * (size_t)N);
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
}

// Dot product and sum with 8 independent partial sums: a plain `s += a[i]*b[i]` loop must keep the
// sequential order (no -ffast-math), so it runs as scalar adds; this vectorizes into one ymm accumulator.
static inline float scan_dot(const float *restrict a, const float *restrict b, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline float scan_sum(const float *restrict a, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i];
    return s;
}

// Chunk c of batch row b, for sequences of T tokens cut into chunks of C (the last one may be short):
// tokens [t0, t0 + Lc), whose first row in the (B·T, ·) activations is row0 = b·T + t0.
typedef struct {
    int64_t t0;
    int Lc;
    size_t row0;
} ChunkSpan;

static inline ChunkSpan chunk_span(int64_t T, int C, int b, int c) {
    const int64_t t0 = (int64_t)c * C;
    return (ChunkSpan){.t0 = t0, .Lc = (int)LL_MIN((int64_t)C, T - t0), .row0 = (size_t)b * T + t0};
}

#endif
