// blas_setup.h — make OpenBLAS use the fast kernels for this CPU, and thread settings.
//
// Debian's OpenBLAS 0.3.21 does not recognise newer Intel CPUs (e.g. family 6 model 207) and silently
// falls back to its generic "Prescott" kernels, ~5x slower. OpenBLAS picks its kernels from
// OPENBLAS_CORETYPE when the library loads, before main() runs, so the only reliable fix is: if the user
// has not set OPENBLAS_CORETYPE and the detected core is a generic fallback, choose the best core set the
// CPU supports (SkylakeX for AVX-512, Haswell for AVX2), put it in the environment and re-exec ourselves.
#ifndef LL_BLAS_SETUP_H
#define LL_BLAS_SETUP_H

// Call first thing in main(). May re-exec the program (argv unchanged). Never returns on exec success.
void blas_setup(char **argv);

// The OpenBLAS kernel set in use, e.g. "SkylakeX", and where it came from ("user", "auto", "detected").
const char *blas_core_name(void);
const char *blas_core_source(void);

// Threads for OpenMP regions (our kernels and OpenBLAS's OpenMP build share the same pool).
// n <= 0 keeps the default (all cores). Also sets flush-to-zero on every thread (fp_flush_denormals).
void threads_setup(int n);

// Flush-to-zero and denormals-are-zero on the calling thread and on every thread of the OpenMP pool (which
// OpenBLAS's OpenMP build shares). Why: decays exp(−Σ a·dt) over long spans and the states they multiply
// underflow into the denormal range, where Intel cores take ~100x longer per operation (AMD barely
// slower), so kernel speed would depend on the data. Values below ~1.2e-38 become 0; nothing the models
// compute is meaningful at that size. blas_setup calls it; call again after changing the thread count.
void fp_flush_denormals(void);
int threads_count(void);

#endif
