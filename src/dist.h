// dist.h — the process group of data-parallel training: MPI when the program was started by an MPI
// launcher (mpirun, srun, mpiexec), a group of one otherwise.
//
// Built with MPI (make MPI=1, the default when OpenMPI's development files are installed) the program links
// libmpi but initialises MPI only when the environment shows an MPI launcher started it; a plain ./train
// never touches MPI. Built without (make MPI=0) every call below is the trivial one-process version, and a
// launch by mpirun with more than one process is refused (the copies would each train alone).
//
// Every reduction here sums in a fixed order (rank 0, 1, 2, ...), never in whatever order the network
// delivers, so a run with the same number of ranks is bit-reproducible.
#ifndef LL_DIST_H
#define LL_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Initialises MPI if an MPI launcher started this process (registers MPI_Finalize with atexit, and makes
// die() abort every rank with a message naming the failing one). Call once, early in main.
void dist_init(int *argc, char ***argv);
bool dist_built_with_mpi(void);
int dist_rank(void);        // 0 .. dist_size()-1 (0 without MPI)
int dist_size(void);        // 1 without MPI
bool dist_is_root(void);    // rank 0: the one that prints, logs and writes checkpoints
int dist_local_size(void);  // ranks on this host (1 without MPI)
const char *dist_host(void);

// Collectives: every rank must call them in the same order with the same sizes.
void dist_sum_doubles(double *v, int n);           // v = sum over ranks, added in rank order; all ranks
int dist_min_int(int v);                           // minimum over ranks
void dist_broadcast_floats(float *v, size_t n);    // rank 0's values to every rank
void dist_gather_text(const char *line, char *out, size_t per_rank);   // on rank 0: every rank's line,
                                                   // rank order, per_rank bytes each (truncated), NUL-ended
// Dies on every rank whose value differs from rank 0's, naming `what` (e.g. the configuration's checksum).
void dist_check_same(uint64_t value, const char *what);

// Gradient reduction over one flat buffer, overlapped with the backward: ranges are posted as they become
// final (dist_grad_post), each is split into dist_size() chunks, chunk r is summed by rank r in rank order
// (a reduce-scatter) and sent back to all (an allgather), point to point and non-blocking. The sum of each
// element is the same whatever the ranges, so results do not depend on the bucketing. No allocation after
// dist_grad_setup.
void dist_grad_setup(float *grads, size_t numel);  // once; grads must stay valid
void dist_grad_post(size_t offset, size_t n);      // grads[offset, offset+n) is final on this rank
void dist_grad_finish(void);                       // everything posted is summed on every rank
size_t dist_grad_posted(void);                     // floats posted since the last finish

#endif
