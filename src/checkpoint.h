// checkpoint.h — the checkpoint directory store. Generic: it knows tensors and text, not models.
//
// A checkpoint of step S is the directory <run_dir>/step_<S, zero-padded to 8 digits>/ holding
//   model.safetensors      the model tensors under the caller's exact names (HF-loadable, F32)
//   optimizer.safetensors  AdamW moments "exp_avg.<name>" and "exp_avg_sq.<name>", same shapes
//   config.json            HF-style model config (caller's string)
//   train_config.json      our full config (caller's string)
//   state.json             training state: step, data position, RNG, ... (caller's string)
//   manifest.json          written last: step and, per file, its size (and CRC32 for the JSON files)
// and <run_dir>/latest holds the name of the newest complete checkpoint directory.
//
// Crash safety: everything is written into <run_dir>/.tmp_step_<S>/ and fsync'ed, the directory is
// renamed to step_<S> (atomically exchanged with an existing step_<S>), run_dir is fsync'ed, and only
// then is `latest` replaced (tmp + rename). A crash at any moment leaves the previous checkpoint intact
// and `latest` naming a complete one; a leftover .tmp_step_* is ignored by resolve and removed by the
// next save.
#ifndef LL_CHECKPOINT_H
#define LL_CHECKPOINT_H

#include "common.h"
#include "safetensors.h"

typedef struct {
    const TensorRef *params;     // n model tensors (names and shapes written as given)
    int n;
    const float *exp_avg;        // AdamW moments: flat, in the order/sizes of params' data concatenated;
    const float *exp_avg_sq;     //   both NULL = no optimizer.safetensors (e.g. an export of weights only)
    const char *hf_config_json;  // contents of config.json, or NULL to omit the file
    const char *config_json;     // contents of train_config.json, or NULL to omit
    const char *state_json;      // contents of state.json, or NULL to omit
    int n_moments;               // moments cover params[0, n_moments) (0 = all n); lets tied aliases at
                                 //   the end of the list (lm_head.weight = embeddings) be skipped
} CheckpointData;

// Saves step `step` under run_dir (created with its parents if missing) as described above, then deletes the
// oldest step_* directories beyond the newest keep_last ones (keep_last <= 0 keeps all; the checkpoint
// just written is never deleted) and any leftover temporary directories. An old checkpoint is renamed to
// .del_step_<S> before its files are deleted, so a kill during pruning never leaves a partial step_<S>. A failure to delete old
// checkpoints only prints a warning: the new checkpoint is safe and training can go on.
bool checkpoint_save(const char *run_dir, int64_t step, const CheckpointData *cd, int keep_last, Err *err);

// Finds the checkpoint to resume from. `path` is either a checkpoint directory (it holds
// model.safetensors) or a run directory: then `latest` is used, falling back to the complete step_*
// directory with the highest step when `latest` is missing or names an incomplete/missing directory.
// Writes the checkpoint directory's path into dir_out.
bool checkpoint_resolve(const char *path, char *dir_out, size_t dir_len, Err *err);

// Reads <dir>/<file> (e.g. "state.json") into a malloc'd NUL-terminated string (free it). When the
// manifest records a CRC32 for the file, it is verified ("corrupt" error on mismatch).
bool checkpoint_read_text(const char *dir, const char *file, char **out, Err *err);

// Loads <dir>/model.safetensors into params[i].data: strict (no missing or extra tensor, exact shapes),
// CRC-checked. Errors name the file and tensor and say to pass the matching --config.
bool checkpoint_load_model(const char *dir, const TensorRef *params, int n, Err *err);

// Loads the AdamW moments of <dir>/optimizer.safetensors into the flat arrays exp_avg / exp_avg_sq
// (layout as in CheckpointData); names and shapes come from params (their data is not touched).
bool checkpoint_load_optimizer(const char *dir, const TensorRef *params, int n, float *exp_avg,
                               float *exp_avg_sq, Err *err);

// Removes the directories a killed save or deletion leaves behind (.tmp_step_*, .old_step_*, .del_step_*);
// failures are warnings. checkpoint_save does it too; call it when a run starts.
void checkpoint_clean_leftovers(const char *run_dir);

// Number of step_* directories in run_dir (0 if it does not exist); *newest (may be NULL) gets the
// highest step, or -1 when there is none.
int checkpoint_count(const char *run_dir, int64_t *newest);

// Deletes `latest` and every step_* directory of run_dir, each the way prune does (renamed out of the
// way, then deleted), so that a kill midway leaves no half-deleted checkpoint.
bool checkpoint_remove_all(const char *run_dir, Err *err);

// The step of checkpoint directory dir: the one its manifest records, else the one its name step_NNNNNNNN
// says, else -1.
int64_t checkpoint_step(const char *dir);

// "step_%08lld" into buf; returns buf.
char *checkpoint_dir_name(char *buf, size_t len, int64_t step);

#endif
