// signals.c — see signals.h.
#include "signals.h"

#include <signal.h>
#include <stdatomic.h>
#include <string.h>

static volatile sig_atomic_t g_signo;   // first SIGINT/SIGTERM received, 0 = none
// Set by the first signal. The handler's sa_mask orders two signals only within one thread: a process
// signal goes to any thread that does not block it (OpenMP / OpenBLAS / sanitizer threads), so two can run
// the handler at the same moment; a lock-free test-and-set (async-signal-safe) lets exactly one be first.
static atomic_flag g_seen = ATOMIC_FLAG_INIT;

static void on_signal(int signo) {
    if (atomic_flag_test_and_set(&g_seen)) {
        // Second signal: the user does not want to wait. Default action (terminate), re-raised, so the
        // exit status says "killed by signal".
        signal(signo, SIG_DFL);
        raise(signo);
        return;
    }
    g_signo = signo;
    // Ctrl-C also ends the rest of a pipeline (`./train ... | tee log`): writing the last progress lines to
    // the closed pipe must not kill the process before its checkpoint is saved.
    signal(SIGPIPE, SIG_IGN);
}

void signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    // Both blocked while either handler runs: a SIGINT and a SIGTERM arriving together are then handled
    // one after the other, so the second one always sees the first's flag.
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    // SA_RESTART: an interrupted read/write/fsync of the checkpoint writer resumes instead of failing
    // with EINTR; the signal is acted upon at the next step boundary.
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int signals_pending(void) { return (int)g_signo; }

const char *signals_name(int signo) {
    return signo == SIGINT ? "SIGINT" : signo == SIGTERM ? "SIGTERM" : "signal";
}
