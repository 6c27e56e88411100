// test_peak.c — the MFU peak (peak.h): a given peak wins; otherwise the sgemm probe runs once, its
// result lands in the cache under this machine's key (other machines' lines kept, a corrupt line of
// ours replaced), and the next lookup reads it back instead of measuring.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas_setup.h"
#include "common.h"
#include "peak.h"
#include "testutil.h"

START_TEST(test_sgemm_probe) {
    const double g = sgemm_gflops(256, 2);
    printf("  sgemm n=256: %.1f GFLOP/s\n", g);
    ck_assert_msg(g > 0.1 && g < 1e6, "implausible sgemm rate %g GFLOP/s", g);
}
END_TEST

// The lines of the cache file that start with this machine's "threads\tcore\t" prefix; *line gets the last.
static int our_lines(const char *path, char *line, size_t cap) {
    char *text = NULL;
    size_t len;
    Err err;
    ck_assert_msg(read_file(path, 1 << 20, &text, &len, &err), "%s", err.msg);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%d\t%s\t", threads_count(), blas_core_name());
    int n = 0;
    for (const char *p = text; *p;) {
        const size_t l = strcspn(p, "\n");
        if (strncmp(p, prefix, strlen(prefix)) == 0) {
            snprintf(line, cap, "%.*s", (int)l, p);
            n++;
        }
        p += l + (p[l] == '\n');
    }
    ck_assert_msg(strstr(text, "64\tZen\tOther CPU\t999.0\n") != NULL, "another machine's line was lost:\n%s", text);
    free(text);
    return n;
}

START_TEST(test_peak_given_and_cache) {
    char dir[] = "/tmp/test_peak_XXXXXX", sub[64], path[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(setenv("XDG_CACHE_HOME", dir, 1), 0);
    snprintf(sub, sizeof sub, "%s/loglinear", dir);
    snprintf(path, sizeof path, "%s/peak_gflops.tsv", sub);

    const Peak given = peak_resolve(123.5, "train.peak_gflops");
    ck_assert(given.gflops == 123.5);
    ck_assert_ptr_nonnull(strstr(given.source, "train.peak_gflops"));
    ck_assert_msg(access(path, F_OK) != 0, "a given peak must not touch the cache");

    // A cache holding another machine's line: measured, added, the other line kept.
    Err err;
    ck_assert(mkdir_p(sub, &err));
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("64\tZen\tOther CPU\t999.0\n", f);
    fclose(f);
    const Peak measured = peak_resolve(0, "train.peak_gflops");
    printf("  measured peak %.1f GFLOP/s (%s)\n", measured.gflops, measured.source);
    ck_assert(measured.gflops > 0.1);
    ck_assert_ptr_nonnull(strstr(measured.source, "just measured"));
    char line[512];
    ck_assert_int_eq(our_lines(path, line, sizeof line), 1);

    // Read back instead of measured again.
    const Peak cached = peak_resolve(0, "train.peak_gflops");
    ck_assert_msg(cached.gflops == measured.gflops, "cached %g != measured %g", cached.gflops, measured.gflops);
    ck_assert_ptr_nonnull(strstr(cached.source, "cached"));

    // Our line with a value that does not parse: measured again and replaced, not trusted, not fatal.
    *strrchr(line, '\t') = '\0';
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "64\tZen\tOther CPU\t999.0\n%s\tgarbage\n", line);
    fclose(f);
    const Peak again = peak_resolve(0, "train.peak_gflops");
    ck_assert_ptr_nonnull(strstr(again.source, "just measured"));
    ck_assert_int_eq(our_lines(path, line, sizeof line), 1);
    ck_assert_ptr_null(strstr(line, "garbage"));

    unsetenv("XDG_CACHE_HOME");
    ck_assert(unlink(path) == 0 && rmdir(sub) == 0 && rmdir(dir) == 0);
}
END_TEST

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const TuNamedTest tests[] = {{"sgemm_probe", test_sgemm_probe}, {"peak_given_and_cache", test_peak_given_and_cache}};
    return tu_run_suite(tu_suite_of("peak", tests, sizeof tests / sizeof tests[0], 120));
}
