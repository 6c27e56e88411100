// peak.h — the fp32 peak that MFU is measured against: the machine's sgemm speed at the current thread
// count, measured once by a short probe and cached, or given by the user.
//
// Why measured: a hard-coded peak is wrong on every other machine (a 16-core Xeon printed MFU 131%). The
// probe multiplies square fp32 matrices (n = 2048, and 4096 where that is fast) through OpenBLAS with the
// threads the run uses and keeps the best rate: what this machine's BLAS actually delivers, not the vendor's paper figure.
// The cache ($XDG_CACHE_HOME or ~/.cache, /loglinear/peak_gflops.tsv) holds one line per
// (CPU model, threads, OpenBLAS core): "threads<TAB>core<TAB>cpu model<TAB>GFLOP/s". A probe run on a busy
// machine measures low; delete the line (or the file) or give peak_gflops to replace it.
#ifndef LL_PEAK_H
#define LL_PEAK_H

typedef struct {
    double gflops;        // the peak, GFLOP/s
    char source[1200];    // where it came from, for the banner, e.g. "cached in /home/u/.cache/..."
} Peak;

// `given` > 0 (the train key peak_gflops) wins; else the cache entry of this CPU model, thread count
// (threads_count()) and OpenBLAS core; else the probe, whose result is added to the cache (a cache that
// cannot be written only costs a probe per run). `given_name` names the key in the source text.
Peak peak_resolve(double given, const char *given_name);

// GFLOP/s of the best of `reps` n x n x n sgemm calls (after one warm-up call), at the current threads.
double sgemm_gflops(int n, int reps);

#endif
