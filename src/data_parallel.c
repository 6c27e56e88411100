// data_parallel.c — see data_parallel.h.
#include "data_parallel.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas_setup.h"
#include "dist.h"

static bool g_overlap = true;   // reduce layers during the backward (LOGLINEAR_DP_OVERLAP=0: after it)

void dp_init(int *argc, char ***argv) {
    dist_init(argc, argv);
    if (dist_size() == 1) return;
    const char *ov = getenv("LOGLINEAR_DP_OVERLAP");
    g_overlap = !(ov && strcmp(ov, "0") == 0);
    // One copy of the progress lines, samples and summaries: rank 0's. Errors and warnings (stderr) of every
    // rank still show.
    if (!dist_is_root() && !freopen("/dev/null", "w", stdout)) die("rank %d: cannot reopen stdout", dist_rank());
}

void dp_threads_setup(int requested) {
    if (dist_size() == 1) {
        threads_setup(requested);
        return;
    }
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    const int bound = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)cores;
    const int local = dist_local_size();
    const int share = (int)LL_MAX(1, cores / local);   // this host's cores split among its ranks
    int n = requested > 0 ? requested : LL_MAX(1, LL_MIN(bound, share));
    n = dist_min_int(n);
    threads_setup(n);
    char line[256];
    snprintf(line, sizeof line, "  rank %d: host %s, %d threads, %d of %ld cores in its CPU binding, %d ranks on the host%s",
             dist_rank(), dist_host(), n, bound, cores, local,
             (long)n * local > cores ? " (OVERSUBSCRIBED: ranks x threads > cores; lower --threads)" : "");
    char *all = xmalloc(sizeof line * (size_t)dist_size() + 1);
    dist_gather_text(line, all, sizeof line);
    if (dist_is_root()) {
        printf("data parallel: %d ranks x %d threads\n%s", dist_size(), n, all);
        if (requested <= 0 && bound < share)
            printf("  (the launcher bound each rank to %d core(s); mpirun --bind-to none, or --map-by slot:PE=%d, "
                   "gives each rank %d threads)\n", bound, share, share);
    }
    free(all);
}

void dp_resume_accum(TrainConfig *tc, const char *ckpt_dir, char *const *overrides, int noverrides) {
    const int R = dist_size();
    if (R == 1) return;
    for (int i = 0; i < noverrides; i++)
        if (strncmp(overrides[i], "grad_accum=", 11) == 0 || strncmp(overrides[i], "train.grad_accum=", 17) == 0)
            return;   // the user chose the per-rank count
    if (tc->grad_accum % R != 0)
        die("%s was trained with %d micro-batches per step (grad_accum, over all ranks), which %d ranks cannot "
            "share evenly; resume with a rank count that divides %d, or give --grad_accum N (per rank; "
            "this changes the batch to batch_size x N x %d)", ckpt_dir, tc->grad_accum, R, tc->grad_accum, R);
    tc->grad_accum /= R;
}

char *dp_config_json(const Config *cfg) {
    Config global = *cfg;
    global.train.grad_accum *= dist_size();
    return config_to_json(&global);
}

void dp_single_process_only(const char *what) {
    if (dist_size() > 1) die("%s runs in one process: start it without mpirun", what);
}

void dp_sync_start(Model *m, float *m1, float *m2, const Config *cfg, const DataLoader *train, int64_t step) {
    if (dist_size() == 1) return;
    char *json = config_to_json(cfg);
    dist_check_same(crc32_update(0, json, strlen(json)), "the configuration (after overrides)");
    free(json);
    const uint64_t data = (uint64_t)dataloader_total_tokens(train) * 1000003u + (uint64_t)dataloader_num_shards(train);
    dist_check_same(data, "the training data (number of shards and tokens)");
    const DataPosition pos = dataloader_position(train);
    dist_check_same((uint64_t)step ^ (pos.epoch << 40) ^ (pos.cursor * 0x9E3779B97F4A7C15ull),
                    "the step and data position to start from (the resumed checkpoint)");
    // Identical starting weights and moments on every rank (equal by construction; sent to be sure).
    const size_t numel = model_num_params(m);
    dist_broadcast_floats(model_params(m), numel);
    dist_broadcast_floats(m1, numel);
    dist_broadcast_floats(m2, numel);
    dist_grad_setup(model_grads(m), numel);
}

void dp_step_begin(DataLoader *dl, int64_t windows) { dataloader_skip(dl, (int64_t)dist_rank() * windows); }

static void post_range(void *ctx, size_t offset, size_t n) {
    (void)ctx;
    dist_grad_post(offset, n);
}

void dp_before_last_backward(Model *m) {
    if (dist_size() > 1 && g_overlap) model_set_grad_ready(m, post_range, NULL);
}

void dp_step_end(Model *m, DataLoader *dl, int64_t windows, double *loss_sum, int64_t *count) {
    if (dist_size() == 1) return;
    model_set_grad_ready(m, NULL, NULL);
    if (dist_grad_posted() == 0) dist_grad_post(0, model_num_params(m));   // no overlap: all at once
    dist_grad_finish();
    double v[2] = {*loss_sum, (double)*count};
    dist_sum_doubles(v, 2);
    *loss_sum = v[0];
    *count = (int64_t)v[1];
    dataloader_skip(dl, (int64_t)(dist_size() - 1 - dist_rank()) * windows);
}

bool dp_eval_batch_is_mine(DataLoader *dl, int i, int B) {
    if (i % dist_size() == dist_rank()) return true;
    dataloader_skip(dl, B);
    return false;
}

void dp_eval_reduce(double *sum, int64_t *count, double *pos_sum, int64_t *pos_count, int T) {
    if (dist_size() == 1) return;
    const int n = 2 + (pos_sum ? 2 * T : 0);
    double *v = xmalloc((size_t)n * sizeof(double));
    v[0] = *sum;
    v[1] = (double)*count;
    for (int p = 0; pos_sum && p < T; p++) v[2 + p] = pos_sum[p], v[2 + T + p] = (double)pos_count[p];
    dist_sum_doubles(v, n);
    *sum = v[0];
    *count = (int64_t)v[1];
    for (int p = 0; pos_sum && p < T; p++) pos_sum[p] = v[2 + p], pos_count[p] = (int64_t)v[2 + T + p];
    free(v);
}
