// dist.c — see dist.h. MPI when compiled with LL_MPI (make MPI=1), else the one-process group.
#include "dist.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

// The launchers' own variables: OpenMPI, PMI (MPICH/Hydra, Intel MPI, Slurm's PMI-1/2), PMIx (Slurm,
// OpenMPI 5). Any of them present: we are one of the launched processes.
static const char *const LAUNCHER_SIZE_VARS[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", NULL};
static const char *const LAUNCHER_RANK_VARS[] = {"PMIX_RANK", "PMI_RANK", NULL};

static bool launched_by_mpi(long *size) {
    *size = 0;
    for (int i = 0; LAUNCHER_SIZE_VARS[i]; i++) {
        const char *v = getenv(LAUNCHER_SIZE_VARS[i]);
        if (v && *v) {
            *size = strtol(v, NULL, 10);
            return true;
        }
    }
    for (int i = 0; LAUNCHER_RANK_VARS[i]; i++)
        if (getenv(LAUNCHER_RANK_VARS[i])) return true;
    return false;
}

static char g_host[256] = "localhost";

const char *dist_host(void) { return g_host; }

#ifndef LL_MPI
// ---------------------------------------------------------------------------------------------------
// Without MPI: a group of one.

void dist_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    gethostname(g_host, sizeof g_host - 1);
    long size;
    if (launched_by_mpi(&size) && size > 1)
        die("this ./train was built without MPI (make MPI=0) but an MPI launcher started it as one of %ld "
            "processes, which would each train alone; rebuild with MPI (apt install libopenmpi-dev, then "
            "make MPI=1) or run it without mpirun", size);
}
bool dist_built_with_mpi(void) { return false; }
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
bool dist_is_root(void) { return true; }
int dist_local_size(void) { return 1; }
void dist_sum_doubles(double *v, int n) { (void)v, (void)n; }
int dist_min_int(int v) { return v; }
void dist_broadcast_floats(float *v, size_t n) { (void)v, (void)n; }
void dist_gather_text(const char *line, char *out, size_t per_rank) { snprintf(out, per_rank, "%s", line); }
void dist_check_same(uint64_t value, const char *what) { (void)value, (void)what; }
void dist_grad_setup(float *grads, size_t numel) { (void)grads, (void)numel; }
void dist_grad_post(size_t offset, size_t n) { (void)offset, (void)n; }
void dist_grad_finish(void) {}
size_t dist_grad_posted(void) { return 0; }

#else
// ---------------------------------------------------------------------------------------------------
// MPI.
#include <mpi.h>

static int g_rank = 0, g_size = 1, g_local_size = 1;
static bool g_active = false;   // MPI initialised by us (and not yet finalised)

static void finalize_at_exit(void) {
    if (!g_active) return;
    g_active = false;
    MPI_Finalize();
}

// die() on any rank: name it and take the whole job down (the others may wait in a collective forever).
static void abort_all_ranks(void) {
    if (!g_active) return;
    fprintf(stderr, "error: rank %d of %d (host %s) failed; stopping all ranks\n", g_rank, g_size, g_host);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

void dist_init(int *argc, char ***argv) {
    gethostname(g_host, sizeof g_host - 1);
    long size;
    if (!launched_by_mpi(&size)) return;   // a plain ./train: MPI stays untouched
    int provided;
    // Only the main thread calls MPI (the OpenMP threads compute between the calls).
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        die("MPI_Init_thread failed (this process was started by an MPI launcher, which set %s)",
            getenv("OMPI_COMM_WORLD_SIZE") ? "OMPI_COMM_WORLD_SIZE" : "PMI/PMIx variables");
    g_active = true;
    atexit(finalize_at_exit);
    die_set_hook(abort_all_ranks);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &g_local_size);
    MPI_Comm_free(&local);
}

bool dist_built_with_mpi(void) { return true; }
int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }
bool dist_is_root(void) { return g_rank == 0; }
int dist_local_size(void) { return g_local_size; }

void dist_sum_doubles(double *v, int n) {
    if (g_size == 1) return;
    // Gather to rank 0, add in rank order there, broadcast: the order is ours, not the library's.
    double small[64];   // a step's loss and count: no allocation in the training step
    const size_t total = (size_t)n * g_size;
    double *all = g_rank != 0 ? NULL : total <= 64 ? small : xmalloc(total * sizeof(double));
    MPI_Gather(v, n, MPI_DOUBLE, all, n, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (g_rank == 0) {
        for (int i = 0; i < n; i++) {
            double s = all[i];
            for (int r = 1; r < g_size; r++) s += all[(size_t)r * n + i];
            v[i] = s;
        }
        if (all != small) free(all);
    }
    MPI_Bcast(v, n, MPI_DOUBLE, 0, MPI_COMM_WORLD);
}

int dist_min_int(int v) {
    int out = v;
    if (g_size > 1) MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return out;
}

// MPI counts are int: long buffers travel in pieces of this many floats.
enum { MSG_MAX_FLOATS = 1 << 28 };

void dist_broadcast_floats(float *v, size_t n) {
    if (g_size == 1) return;
    for (size_t off = 0; off < n; off += MSG_MAX_FLOATS) {
        size_t len = LL_MIN((size_t)MSG_MAX_FLOATS, n - off);
        MPI_Bcast(v + off, (int)len, MPI_FLOAT, 0, MPI_COMM_WORLD);
    }
}

void dist_gather_text(const char *line, char *out, size_t per_rank) {
    char *mine = xcalloc(per_rank, 1);
    snprintf(mine, per_rank, "%s", line);
    char *all = g_rank == 0 ? xcalloc(per_rank * g_size, 1) : NULL;
    MPI_Gather(mine, (int)per_rank, MPI_CHAR, all, (int)per_rank, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (g_rank == 0) {
        size_t cap = per_rank * g_size + 1, used = 0;
        out[0] = 0;
        for (int r = 0; r < g_size; r++)
            used += (size_t)snprintf(out + used, cap - used, "%s\n", all + (size_t)r * per_rank);
    }
    free(mine);
    free(all);
}

void dist_check_same(uint64_t value, const char *what) {
    if (g_size == 1) return;
    uint64_t root = value;
    MPI_Bcast(&root, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (root != value)
        die("rank %d: %s differs from rank 0's; every rank must run the same config, data and checkpoint "
            "(check the files on every host)", g_rank, what);
}

// ---------------------------------------------------------------------------------------------------
// Gradient reduction: a fixed-order reduce-scatter + allgather, per posted range ("bucket").

enum { MAX_BUCKETS = 4096 };

typedef struct {
    size_t lo, n;          // the range of the flat buffer
    size_t scratch_at;     // where the other ranks' copies of our chunk land in each scratch row
    int phase;             // 0 = sending/receiving contributions, 1 = summed, results travelling
} Bucket;

static struct {
    float *grads;
    size_t numel, posted, row;     // row: floats per scratch row (one row per other rank)
    float *scratch;                // (size-1, row)
    Bucket bucket[MAX_BUCKETS];
    MPI_Request *req;              // (MAX_BUCKETS, 2*(size-1)) the sends and receives of each bucket
    int nbuckets, nsummed, ndone;  // posted; phase-1 finished (summed); phase-2 finished
    size_t scratch_used;
} G;

// Chunk r of a bucket of n elements: [n*r/R, n*(r+1)/R).
static size_t chunk_lo(size_t n, int r) { return (size_t)((unsigned __int128)n * (unsigned)r / (unsigned)g_size); }

static MPI_Request *bucket_req(int b) { return G.req + (size_t)b * 2 * (g_size - 1); }

void dist_grad_setup(float *grads, size_t numel) {
    G.grads = grads;
    G.numel = numel;
    if (g_size == 1) return;
    G.row = numel / (size_t)g_size + 2 * MAX_BUCKETS + 1;   // own chunks of every bucket, rounding included
    G.scratch = xmalloc((size_t)(g_size - 1) * G.row * sizeof(float));
    G.req = xmalloc((size_t)MAX_BUCKETS * 2 * (g_size - 1) * sizeof(MPI_Request));
}

// Others' rank index among the g_size-1 peers (skipping ourselves).
static int peer_slot(int s) { return s < g_rank ? s : s - 1; }

static void post_bucket(size_t lo, size_t n) {
    if (G.nbuckets == MAX_BUCKETS) die("more than %d gradient ranges posted in one step", MAX_BUCKETS);
    const int b = G.nbuckets++;
    Bucket *bk = &G.bucket[b];
    const size_t my_lo = chunk_lo(n, g_rank), my_n = chunk_lo(n, g_rank + 1) - my_lo;
    *bk = (Bucket){.lo = lo, .n = n, .scratch_at = G.scratch_used, .phase = 0};
    G.scratch_used += my_n;
    MPI_Request *rq = bucket_req(b);
    int k = 0;
    for (int s = 0; s < g_size; s++) {
        if (s == g_rank) continue;
        float *dst = G.scratch + (size_t)peer_slot(s) * G.row + bk->scratch_at;
        MPI_Irecv(dst, (int)my_n, MPI_FLOAT, s, b, MPI_COMM_WORLD, &rq[k++]);
    }
    for (int s = 0; s < g_size; s++) {
        if (s == g_rank) continue;
        const size_t slo = chunk_lo(n, s), sn = chunk_lo(n, s + 1) - slo;
        MPI_Isend(G.grads + lo + slo, (int)sn, MPI_FLOAT, s, b, MPI_COMM_WORLD, &rq[k++]);
    }
}

// Our chunk of bucket b = contributions of ranks 0, 1, ..., R-1 added in that order; then it goes to every
// other rank and their chunks come in (phase 1 of the bucket's requests).
static void sum_bucket(int b) {
    Bucket *bk = &G.bucket[b];
    const size_t my_lo = chunk_lo(bk->n, g_rank), my_n = chunk_lo(bk->n, g_rank + 1) - my_lo;
    float *own = G.grads + bk->lo + my_lo;   // (my_n)
    const float *rows = G.scratch + bk->scratch_at;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < my_n; i++) {
        float acc = g_rank == 0 ? own[i] : rows[i];
        for (int s = 1; s < g_size; s++) acc += s == g_rank ? own[i] : rows[(size_t)peer_slot(s) * G.row + i];
        own[i] = acc;
    }
    MPI_Request *rq = bucket_req(b);
    int k = 0;
    for (int s = 0; s < g_size; s++) {
        if (s == g_rank) continue;
        const size_t slo = chunk_lo(bk->n, s), sn = chunk_lo(bk->n, s + 1) - slo;
        MPI_Irecv(G.grads + bk->lo + slo, (int)sn, MPI_FLOAT, s, MAX_BUCKETS + b, MPI_COMM_WORLD, &rq[k++]);
    }
    for (int s = 0; s < g_size; s++) {
        if (s == g_rank) continue;
        MPI_Isend(own, (int)my_n, MPI_FLOAT, s, MAX_BUCKETS + b, MPI_COMM_WORLD, &rq[k++]);
    }
    bk->phase = 1;
}

// Moves every bucket as far as it can go without blocking (wait = true: to the end). Buckets advance in
// posting order, which every rank shares.
static void progress(bool wait) {
    const int nreq = 2 * (g_size - 1);
    while (G.nsummed < G.nbuckets) {
        int flag = 1;
        // The sends must be done too: the results of phase 2 land in the memory they read.
        if (wait) MPI_Waitall(nreq, bucket_req(G.nsummed), MPI_STATUSES_IGNORE);
        else MPI_Testall(nreq, bucket_req(G.nsummed), &flag, MPI_STATUSES_IGNORE);
        if (!flag) break;
        sum_bucket(G.nsummed++);
    }
    while (G.ndone < G.nsummed) {
        int flag = 1;
        if (wait) MPI_Waitall(nreq, bucket_req(G.ndone), MPI_STATUSES_IGNORE);
        else MPI_Testall(nreq, bucket_req(G.ndone), &flag, MPI_STATUSES_IGNORE);
        if (!flag) break;
        G.ndone++;
    }
}

void dist_grad_post(size_t offset, size_t n) {
    if (g_size == 1 || n == 0) return;
    if (offset + n > G.numel) die("dist_grad_post: range [%zu, %zu) outside the %zu gradients", offset, offset + n, G.numel);
    for (size_t off = 0; off < n; off += MSG_MAX_FLOATS) post_bucket(offset + off, LL_MIN((size_t)MSG_MAX_FLOATS, n - off));
    G.posted += n;
    progress(false);
}

void dist_grad_finish(void) {
    if (g_size == 1) return;
    if (G.posted != G.numel)
        die("internal error: %zu of %zu gradients were posted for the reduction in this step", G.posted, G.numel);
    progress(true);
    G.nbuckets = G.nsummed = G.ndone = 0;
    G.posted = G.scratch_used = 0;
}

size_t dist_grad_posted(void) { return G.posted; }

#endif
