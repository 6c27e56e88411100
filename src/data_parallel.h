// data_parallel.h — data-parallel training: what the trainer does differently when dist_size() > 1 ranks
// train one model (dist.h). With one rank every function here is a no-op (or the plain single-process
// call), so a plain ./train behaves exactly as without it.
//
// The scheme (what README.md, "Data-parallel training", promises the user):
//  * grad_accum is per rank: a step is B x grad_accum x ranks windows, read in the one-process order;
//    rank r takes the r-th consecutive slice of B x grad_accum windows and passes over the others, so the
//    data stream (and the saved position) is that of one process with grad_accum x ranks.
//  * Gradients and the loss are summed over ranks in a fixed order (dist_grad_*), starting per layer as the
//    last micro-batch's backward completes it; each rank then runs the same clipping and AdamW step on the
//    same numbers, so the weights stay identical on every rank without being sent.
//  * Checkpoints record grad_accum x ranks (the global batch), so any rank count can resume them and the
//    single-process program reads them unchanged; resuming with R ranks runs that count / R per rank.
//  * Only rank 0 prints (the others' stdout goes to /dev/null), logs, samples and writes checkpoints;
//    errors on any rank stop them all (die() -> MPI_Abort) naming the rank.
#ifndef LL_DATA_PARALLEL_H
#define LL_DATA_PARALLEL_H

#include "config.h"
#include "data.h"
#include "model.h"

// dist_init, then silences stdout on ranks other than 0. First thing in main after blas_setup.
void dp_init(int *argc, char ***argv);

// Threads per rank (replaces threads_setup): `requested` if > 0, else the cores of this rank's CPU binding
// shared among the ranks of its host; the same on every rank (the gradient norm's summation order depends
// on the thread count). Rank 0 prints the layout.
void dp_threads_setup(int requested);

// When resuming with more than one rank and no --grad_accum override: the checkpoint's grad_accum is the
// global count; make it per rank (dies if the rank count does not divide it).
void dp_resume_accum(TrainConfig *tc, const char *ckpt_dir, char *const *overrides, int noverrides);

// config_to_json with grad_accum as the global count (grad_accum x ranks): what a checkpoint records.
char *dp_config_json(const Config *cfg);

// Dies unless this is a single-process run (for modes that do not distribute, e.g. --dump-grads).
void dp_single_process_only(const char *what);

// After the weights are set up: checks that every rank has the same config, data and step, gives every rank
// rank 0's weights and moments, and prepares the gradient reduction.
void dp_sync_start(Model *m, float *m1, float *m2, const Config *cfg, const DataLoader *train, int64_t step);

// The micro-batches of one step on this rank: begin skips the slices of the ranks before this one;
// call dp_before_last_backward before the last micro-batch's forward/backward (its layers' gradients are
// then reduced as they complete); end finishes the reduction of the gradients, sums loss_sum and count over
// ranks, and skips the slices of the ranks after this one. windows = B x grad_accum.
void dp_step_begin(DataLoader *dl, int64_t windows);
void dp_before_last_backward(Model *m);
void dp_step_end(Model *m, DataLoader *dl, int64_t windows, double *loss_sum, int64_t *count);

// Validation: batch i of the sample belongs to rank i mod ranks. False (and the batch is skipped in dl)
// when it is another rank's.
bool dp_eval_batch_is_mine(DataLoader *dl, int i, int B);
// Sums a validation pass's statistics over ranks (pos_sum/pos_count: T entries each, or NULL).
void dp_eval_reduce(double *sum, int64_t *count, double *pos_sum, int64_t *pos_count, int T);

#endif
