// resume_check.c — see resume_check.h.
#include "resume_check.h"

#include <math.h>

#define RESUME_HINT "resume from another checkpoint (or restore the files)"

bool resume_check_moments(const TrainState *st, const TensorRef *params, int n, const float *exp_avg,
                          const float *exp_avg_sq, const char *dir, Err *err) {
    char opt_path[4200], state_path[4200];
    snprintf(opt_path, sizeof opt_path, "%s/optimizer.safetensors", dir);
    snprintf(state_path, sizeof state_path, "%s/state.json", dir);
    const int64_t updates = st->step - st->bad_steps_total;   // steps that ran AdamW
    const char *nz_name = NULL, *nz_kind = NULL;               // the first non-zero moment, if any
    int64_t nz_at = 0;
    float nz_val = 0;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const int64_t numel = tensor_numel(&params[i]);
        const float *m = exp_avg + off, *v = exp_avg_sq + off;
        for (int64_t j = 0; j < numel; j++) {
            if (!isfinite(m[j]))
                return err_set(err, "%s: exp_avg.%s[%lld] = %g, but an AdamW first moment is always finite (the file "
                               "is damaged); " RESUME_HINT, opt_path, params[i].name, (long long)j, (double)m[j]);
            if (!isfinite(v[j]) || v[j] < 0)
                return err_set(err, "%s: exp_avg_sq.%s[%lld] = %g, but an AdamW second moment is a mean of squares: "
                               "finite and >= 0 (the file is damaged); " RESUME_HINT, opt_path, params[i].name,
                               (long long)j, (double)v[j]);
            if (!nz_name && (m[j] != 0 || v[j] != 0)) {
                nz_name = params[i].name;
                nz_kind = m[j] != 0 ? "exp_avg" : "exp_avg_sq";
                nz_at = j;
                nz_val = m[j] != 0 ? m[j] : v[j];
            }
        }
        off += (size_t)numel;
    }
    if (updates > 0 && !nz_name)
        return err_set(err, "%s: field 'step' = %lld with 'bad_steps_total' = %lld says %lld optimizer step%s ran, but "
                       "every AdamW moment in %s is zero (an optimizer that never ran): the files do not belong "
                       "together; " RESUME_HINT ", or start a new run from these weights with --init-from %s",
                       state_path, (long long)st->step, (long long)st->bad_steps_total, (long long)updates,
                       updates > 1 ? "s" : "", opt_path, dir);
    if (updates == 0 && nz_name)
        return err_set(err, "%s: field 'step' = %lld with 'bad_steps_total' = %lld says no optimizer step ran, but %s "
                       "holds non-zero moments (%s.%s[%lld] = %g): the files do not belong together; " RESUME_HINT,
                       state_path, (long long)st->step, (long long)st->bad_steps_total, opt_path, nz_kind, nz_name,
                       (long long)nz_at, (double)nz_val);
    return true;
}
