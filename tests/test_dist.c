// test_dist.c — data-parallel training with mpirun: 2 ranks train like 1 process with twice the gradient
// accumulation, bit-reproducibly and independently of the overlap; runs resume with another rank count;
// checkpoints and validation agree with the single-process program; a failing rank stops the job naming
// itself. Built without MPI (make MPI=0): ./train must refuse to run as several mpirun processes.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dist.h"
#include "safetensors.h"
#include "testrun.h"
#include "testutil.h"

static char g_tmp[256];

#define MPIRUN "mpirun --oversubscribe --allow-run-as-root"
// Tiny, one thread per rank (the reference sums depend on the thread count), checkpoints at 3 and 6.
#define RUN "--config tiny_loglinear_mamba2.json --threads 1 --steps 6 --batch_size 2 --warmup_steps 1 " \
            "--eval_every 3 --eval_batches 3 --save_every 3 --sample_every 0"

static void setup(void) {
    tu_require_train_and_bytes();
    tu_make_tmp(g_tmp, sizeof g_tmp, "dist");
}

static void teardown(void) { tu_remove_tmp(g_tmp); }

// Largest |a - b| over every tensor of two model.safetensors files of the same model (run_a/step_N).
static double max_weight_difference(const char *run_a, const char *run_b, int step) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/%s/step_%08d/model.safetensors", g_tmp, run_a, step);
    snprintf(pb, sizeof pb, "%s/%s/step_%08d/model.safetensors", g_tmp, run_b, step);
    StFileInfo info;
    Err err;
    ck_assert_msg(safetensors_list(pa, &info, &err), "%s", err.msg);
    TensorRef *ra = xcalloc((size_t)info.n, sizeof *ra), *rb = xcalloc((size_t)info.n, sizeof *rb);
    for (int i = 0; i < info.n; i++) {
        ra[i] = (TensorRef){.name = info.tensors[i].name, .ndim = info.tensors[i].ndim};
        for (int k = 0; k < info.tensors[i].ndim; k++) ra[i].shape[k] = info.tensors[i].shape[k];
        ra[i].data = xmalloc((size_t)tensor_numel(&ra[i]) * sizeof(float));
        rb[i] = ra[i];
        rb[i].data = xmalloc((size_t)tensor_numel(&ra[i]) * sizeof(float));
    }
    ck_assert_msg(safetensors_read(pa, ra, info.n, true, &err), "%s", err.msg);
    ck_assert_msg(safetensors_read(pb, rb, info.n, true, &err), "%s", err.msg);
    double worst = 0;
    for (int i = 0; i < info.n; i++) {
        for (int64_t j = 0; j < tensor_numel(&ra[i]); j++) worst = fmax(worst, fabs(ra[i].data[j] - rb[i].data[j]));
        free(ra[i].data);
        free(rb[i].data);
    }
    free(ra);
    free(rb);
    safetensors_info_free(&info);
    return worst;
}

static bool same_file(const char *run_a, const char *run_b, int step, const char *file) {
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/%s/step_%08d/%s", g_tmp, run_a, step, file);
    snprintf(b, sizeof b, "%s/%s/step_%08d/%s", g_tmp, run_b, step, file);
    return files_equal(a, b);
}

static char *read_text(const char *run, int step, const char *file) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s/step_%08d/%s", g_tmp, run, step, file);
    char *text;
    size_t len;
    Err err;
    ck_assert_msg(read_file(path, 1 << 20, &text, &len, &err), "%s", err.msg);
    return text;
}

static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

static bool skip_without_mpi(void) {
    if (dist_built_with_mpi()) return false;
    printf("  built without MPI (make MPI=0): skipped\n");
    return true;
}

// 2 ranks x grad_accum 1 = 1 process x grad_accum 2: the same windows, the same steps up to the order of
// float additions; the checkpoints record the same global batch and data position.
START_TEST(test_two_ranks_match_doubled_accumulation) {
    if (skip_without_mpi()) return;
    run_ok("./train " RUN " --grad_accum 2 --run_dir %s/one", g_tmp);
    char *out;
    int rc = run(&out, MPIRUN " -np 2 ./train " RUN " --grad_accum 1 --run_dir %s/two", g_tmp);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_msg(strstr(out, "data parallel: 2 ranks x 1 threads") && strstr(out, "rank 1: host"), "no layout:\n%s", out);
    ck_assert_msg(strstr(out, "accum 1 x ranks 2 = 256 tokens/step"), "banner:\n%s", out);
    ck_assert_msg(count_of(out, "done: ") == 1 && count_of(out, "step     6 | val loss") == 1,
                  "only rank 0 may print:\n%s", out);
    free(out);
    double a[8], b[8];
    char da[300], db[300];
    snprintf(da, sizeof da, "%s/one", g_tmp);
    snprintf(db, sizeof db, "%s/two", g_tmp);
    ck_assert_int_eq(read_losses(da, a, 8), 6);
    ck_assert_int_eq(read_losses(db, b, 8), 6);
    double loss_diff = 0;
    for (int i = 0; i < 6; i++) loss_diff = fmax(loss_diff, fabs(a[i] - b[i]));
    const double w_diff = max_weight_difference("one", "two", 6);
    printf("2 ranks x accum 1 vs 1 process x accum 2, 6 steps: max loss difference %.2e, max weight difference %.2e\n",
           loss_diff, w_diff);
    ck_assert_msg(loss_diff < 1e-5 && w_diff < 1e-5, "the 2-rank run differs (loss %.3e, weights %.3e)", loss_diff, w_diff);
    char *sa = read_text("one", 6, "state.json"), *sb = read_text("two", 6, "state.json");
    // From the data position to the tokens seen: the same in both (the rest holds the time taken).
    const char *pa = strstr(sa, "\"data_epoch\""), *pb = strstr(sb, "\"data_epoch\""), *ea = strstr(sa, "\"bad_steps");
    ck_assert_msg(pa && pb && ea && strncmp(pa, pb, (size_t)(ea - pa)) == 0, "data positions differ:\n%s\n%s", sa, sb);
    char *ca = read_text("two", 6, "train_config.json");
    ck_assert_msg(strstr(ca, "\"grad_accum\":\t2,"), "the checkpoint must record the global grad_accum 2:\n%s", ca);
    ck_assert(same_file("one", "two", 6, "config.json"));
    free(sa);
    free(sb);
    free(ca);
}
END_TEST

// The same 2-rank run twice, once reducing each layer during the backward and once after it: identical
// bytes (the reduction order is fixed and independent of the bucketing).
START_TEST(test_reproducible_and_overlap_independent) {
    if (skip_without_mpi()) return;
    run_ok(MPIRUN " -np 2 ./train " RUN " --run_dir %s/a", g_tmp);
    run_ok("LOGLINEAR_DP_OVERLAP=0 " MPIRUN " -x LOGLINEAR_DP_OVERLAP -np 2 ./train " RUN " --run_dir %s/b", g_tmp);
    ck_assert_msg(same_file("a", "b", 6, "model.safetensors") && same_file("a", "b", 6, "optimizer.safetensors"),
                  "two 2-rank runs (overlapped and not) differ");
    printf("2-rank runs with and without overlap: model and optimizer byte-identical\n");
}
END_TEST

// Stop at 3 and resume: with 2 ranks again (byte-identical to the straight run), with 1 process (the
// checkpoint's global grad_accum 2), and a 1-process checkpoint with 2 ranks; 3 ranks cannot split 2.
START_TEST(test_resume_across_rank_counts) {
    if (skip_without_mpi()) return;
    run_ok(MPIRUN " -np 2 ./train " RUN " --run_dir %s/straight", g_tmp);
    run_ok(MPIRUN " -np 2 ./train " RUN " --run_dir %s/split --stop-at 3", g_tmp);
    run_ok(MPIRUN " -np 2 ./train --resume %s/split", g_tmp);
    ck_assert_msg(same_file("straight", "split", 6, "model.safetensors") &&
                  same_file("straight", "split", 6, "optimizer.safetensors"),
                  "2 ranks: 6 straight steps != 3 + resume + 3");
    char *out;
    int rc = run(&out, "./train --resume %s/split/step_00000003 --run_dir %s/to_one", g_tmp, g_tmp);
    ck_assert_msg(rc == 0 && strstr(out, "accum 2 = 256 tokens/step"), "%s", out);
    free(out);
    run_ok("./train " RUN " --grad_accum 2 --run_dir %s/from_one --stop-at 3", g_tmp);
    rc = run(&out, MPIRUN " -np 2 ./train --resume %s/from_one", g_tmp);
    ck_assert_msg(rc == 0 && strstr(out, "accum 1 x ranks 2 = 256 tokens/step"), "%s", out);
    free(out);
    const double d1 = max_weight_difference("straight", "to_one", 6), d2 = max_weight_difference("straight", "from_one", 6);
    printf("resume 2 ranks -> 1 process: max weight difference %.2e; 1 process -> 2 ranks: %.2e (vs 2 ranks straight)\n",
           d1, d2);
    ck_assert_msg(d1 < 1e-5 && d2 < 1e-5, "resuming with another rank count changes the run (%.3e, %.3e)", d1, d2);
    rc = run(&out, MPIRUN " -np 3 ./train --resume %s/split", g_tmp);
    ck_assert_msg(rc != 0 && strstr(out, "3 ranks cannot share evenly") && strstr(out, "--grad_accum"), "%s", out);
    free(out);
}
END_TEST

// A 2-rank checkpoint evaluated by one process and by 2 ranks (3 batches: an uneven split): the same loss,
// and the same per-position curve.
START_TEST(test_eval_across_ranks) {
    if (skip_without_mpi()) return;
    run_ok(MPIRUN " -np 2 ./train " RUN " --run_dir %s/r", g_tmp);
    char *one, *two;
    int rc = run(&one, "./train --resume %s/r --eval --positions %s/p1.tsv", g_tmp, g_tmp);
    ck_assert_msg(rc == 0, "%s", one);
    rc = run(&two, MPIRUN " -np 2 ./train --resume %s/r --eval --positions %s/p2.tsv", g_tmp, g_tmp);
    ck_assert_msg(rc == 0, "%s", two);
    const char *la = strstr(one, "val loss"), *lb = strstr(two, "val loss");
    ck_assert_msg(la && lb && strncmp(la, lb, 30) == 0, "validation differs:\n%s\n%s", one, two);
    printf("--eval, 1 process: %.28s; 2 ranks: %.28s\n", la, lb);
    char p1[300], p2[300];
    snprintf(p1, sizeof p1, "%s/p1.tsv", g_tmp);
    snprintf(p2, sizeof p2, "%s/p2.tsv", g_tmp);
    ck_assert_msg(files_equal(p1, p2), "per-position losses differ between 1 process and 2 ranks");
    free(one);
    free(two);
}
END_TEST

// One rank fails (its data pattern matches nothing) while the other waits for it: the job ends at once,
// non-zero, naming the rank; no hang (timeout 120 would exit with 124).
START_TEST(test_failing_rank_stops_all) {
    if (skip_without_mpi()) return;
    char *out;
    int rc = run(&out, "timeout 120 " MPIRUN " -np 1 ./train " RUN " --run_dir %s/f : -np 1 ./train " RUN
                 " --run_dir %s/f --train_data '%s/missing_*.bin'", g_tmp, g_tmp, g_tmp);
    ck_assert_msg(rc != 0 && rc != 124, "rc %d:\n%s", rc, out);
    ck_assert_msg(strstr(out, "missing_") && strstr(out, "rank 1 of 2") && strstr(out, "stopping all ranks"), "%s", out);
    free(out);
    rc = run(&out, MPIRUN " -np 2 ./train " RUN " --run_dir %s/d --dump-grads %s/g.safetensors", g_tmp, g_tmp);
    ck_assert_msg(rc != 0 && strstr(out, "--dump-grads runs in one process"), "%s", out);
    free(out);
}
END_TEST

// Built without MPI, a launch as one of several processes is refused (they would each train alone).
START_TEST(test_without_mpi_refuses_several_processes) {
    if (dist_built_with_mpi()) {
        printf("  built with MPI: the refusal of a build without MPI is not testable here (make MPI=0 test)\n");
        return;
    }
    char *out;
    int rc = run(&out, "OMPI_COMM_WORLD_SIZE=2 ./train " RUN " --run_dir %s/x", g_tmp);
    ck_assert_msg(rc != 0 && strstr(out, "built without MPI") && strstr(out, "make MPI=1"), "%s", out);
    free(out);
    run_ok("OMPI_COMM_WORLD_SIZE=1 ./train " RUN " --steps 1 --run_dir %s/y", g_tmp);
}
END_TEST

int main(void) {
    Suite *s = suite_create("dist");
    TCase *tc = tcase_create("mpirun");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_two_ranks_match_doubled_accumulation);
    tcase_add_test(tc, test_reproducible_and_overlap_independent);
    tcase_add_test(tc, test_resume_across_rank_counts);
    tcase_add_test(tc, test_eval_across_ranks);
    tcase_add_test(tc, test_failing_rank_stops_all);
    tcase_add_test(tc, test_without_mpi_refuses_several_processes);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
