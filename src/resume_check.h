// resume_check.h — cross-checks of a checkpoint being resumed that no single file can make on its own:
// the AdamW moments of optimizer.safetensors against state.json. Each file is valid by itself (CRCs,
// names, shapes, field ranges) by the time this runs; what is checked is that they tell the same story,
// so that a hand-edited state.json or a file copied from another checkpoint is refused instead of
// silently resuming with an optimizer state that contradicts the step count.
#ifndef LL_RESUME_CHECK_H
#define LL_RESUME_CHECK_H

#include "safetensors.h"
#include "train_state.h"

// The moments exp_avg / exp_avg_sq (flat, params[0, n) concatenated, as checkpoint_load_optimizer fills
// them) of checkpoint directory dir's optimizer.safetensors against the state st of its state.json:
//   - every exp_avg is finite, every exp_avg_sq finite and >= 0 (AdamW's second moment is a mean of squares);
//   - the moments are non-zero exactly when an optimizer step was taken, i.e. when step > bad_steps_total
//     (a skipped step updates neither the weights nor the moments).
// Errors name the file, the tensor or field, and the fix.
bool resume_check_moments(const TrainState *st, const TensorRef *params, int n, const float *exp_avg,
                          const float *exp_avg_sq, const char *dir, Err *err);

#endif
