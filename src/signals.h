// signals.h — graceful interruption of a training run.
//
// After signals_install(), the first SIGINT or SIGTERM only records itself: the training loop polls
// signals_pending() at step boundaries, finishes the step, saves a checkpoint and exits with
// 128 + signal number (130 for Ctrl-C, 143 for SIGTERM, what shells and job schedulers expect). A second
// signal restores the default action and re-raises itself, so it ends the process at once (e.g. when a
// step or a checkpoint takes too long to wait for). Nothing is printed from the handler: it only sets
// flags, which keeps it async-signal-safe.
#ifndef LL_SIGNALS_H
#define LL_SIGNALS_H

#include <stdbool.h>

void signals_install(void);
// The signal number received (SIGINT or SIGTERM), or 0 when none has arrived.
int signals_pending(void);
// "SIGINT" / "SIGTERM" (for messages); "signal" for anything else.
const char *signals_name(int signo);

#endif
