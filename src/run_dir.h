// run_dir.h — the run directory of a training run: <run_dir>/log.jsonl beside the checkpoints
// (checkpoint.h). Keeps a run directory holding exactly one run, and its log in step with its checkpoints:
//   * a fresh run refuses a directory that already holds a run (log.jsonl, `latest` or step_* checkpoints)
//     unless told to clear it, so a later --resume can never pick up another run's checkpoint;
//   * a resumed run cuts log.jsonl back to the checkpoint's step, so the steps between that checkpoint
//     and the interruption are not logged twice.
#ifndef LL_RUN_DIR_H
#define LL_RUN_DIR_H

#include "common.h"

// For a fresh run into run_dir. A missing or empty directory (or one with only unrelated files) is fine.
// One that holds a run is an error naming it and the ways on (--resume, --overwrite); with overwrite
// its checkpoints and log.jsonl are deleted instead (other files are left alone) and a note is printed.
bool run_dir_prepare_fresh(const char *run_dir, bool overwrite, Err *err);

// For a resumed run: rewrites <run_dir>/log.jsonl (atomically: temporary file, fsync, rename) without
// the lines of steps after `step` and without a last line cut short by a crash. *dropped (may be NULL)
// gets the number of lines removed. A missing log is fine (nothing to cut).
bool run_dir_truncate_log(const char *run_dir, int64_t step, int64_t *dropped, Err *err);

// Opens <run_dir>/log.jsonl for appending (creating the directory and the file when missing).
FILE *run_dir_open_log(const char *run_dir, Err *err);

#endif
