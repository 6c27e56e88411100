// blas_setup.c — see blas_setup.h.
#include "blas_setup.h"

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <cblas.h>
#include <stdbool.h>
#include <strings.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Declared by OpenBLAS's cblas.h; repeated here so the dependency is visible.
char *openblas_get_corename(void);

static const char *g_source = "detected";

static const char *best_core_for_cpu(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

// Re-execs with the best core set for this CPU when OpenBLAS fell back to a generic one and the user did not
// choose; returns otherwise (also when the exec fails).
static void reexec_with_best_core(char **argv) {
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (getenv("LOGLINEAR_BLAS_REEXEC")) {
        g_source = "auto";
        return;
    }
    if (user && user[0]) {
        g_source = "user";
        return;
    }
    const char *core = openblas_get_corename();
    const char *want = best_core_for_cpu();
    // Only generic fallbacks are overridden; a core OpenBLAS recognised is left alone.
    bool generic = core && (strcmp(core, "Prescott") == 0 || strcmp(core, "Core2") == 0 ||
                            strcmp(core, "Nehalem") == 0 || strcmp(core, "Sandybridge") == 0 ||
                            strcmp(core, "Katmai") == 0 || strcmp(core, "Banias") == 0);
    if (!want || !generic || strcasecmp(core, want) == 0) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv("LOGLINEAR_BLAS_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    // exec failed (e.g. no /proc): keep running with the slow kernels, but say so.
    fprintf(stderr, "warning: could not re-exec with OPENBLAS_CORETYPE=%s; set it yourself for ~5x faster matmuls\n", want);
    unsetenv("LOGLINEAR_BLAS_REEXEC");
}

void blas_setup(char **argv) {
    reexec_with_best_core(argv);
    fp_flush_denormals();
}

const char *blas_core_name(void) { return openblas_get_corename(); }
const char *blas_core_source(void) { return g_source; }

void threads_setup(int n) {
    if (n > 0) {
        omp_set_num_threads(n);
        openblas_set_num_threads(n);
    }
    fp_flush_denormals();
}

static void flush_this_thread(void) {
#if defined(__SSE__) || defined(__x86_64__)
    _mm_setcsr(_mm_getcsr() | 0x8040);   // FTZ (bit 15) | DAZ (bit 6)
#endif
}

void fp_flush_denormals(void) {
    flush_this_thread();
#pragma omp parallel num_threads(omp_get_max_threads())
    flush_this_thread();
}

int threads_count(void) { return omp_get_max_threads(); }
