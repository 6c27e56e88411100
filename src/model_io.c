// model_io.c — see model_io.h.
#include "model_io.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "checkpoint.h"

TensorRef *model_tensor_refs(Model *m) {
    const int n = model_num_tensors(m);
    TensorRef *refs = xcalloc((size_t)n, sizeof *refs);
    for (int i = 0; i < n; i++) {
        const ParamInfo *pi = model_tensor(m, i);
        refs[i].name = pi->name;
        refs[i].ndim = pi->ndim;
        for (int k = 0; k < 4; k++) refs[i].shape[k] = pi->shape[k];
        refs[i].data = model_params(m) + pi->offset;
    }
    return refs;
}

// The "step" of <dir>/state.json (a number or a decimal string), 0 when absent.
static bool read_step(const char *dir, int64_t *step, Err *err) {
    char *text = NULL;
    if (!checkpoint_read_text(dir, "state.json", &text, err)) return false;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return err_set(err, "%s/state.json is not valid JSON; use another checkpoint", dir);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "step");
    *step = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : cJSON_IsString(v) ? strtoll(v->valuestring, NULL, 10) : 0;
    cJSON_Delete(root);
    return true;
}

bool trained_model_open(TrainedModel *tm, const char *path, int B, int T, Err *err) {
    memset(tm, 0, sizeof *tm);
    if (!checkpoint_resolve(path, tm->dir, sizeof tm->dir, err)) return false;
    char cfg_path[1100];
    snprintf(cfg_path, sizeof cfg_path, "%s/train_config.json", tm->dir);
    if (!config_load(&tm->cfg, cfg_path, tm->origin, sizeof tm->origin, err)) return false;
    if (!read_step(tm->dir, &tm->step, err)) return false;
    tm->model = model_create(&tm->cfg.model, B, T, err);
    if (!tm->model) return false;
    TensorRef *refs = model_tensor_refs(tm->model);
    const bool ok = checkpoint_load_model(tm->dir, refs, model_num_tensors(tm->model), err);
    free(refs);
    if (!ok) {
        trained_model_close(tm);
        return false;
    }
    return true;
}

bool trained_model_init(TrainedModel *tm, const char *config_path, int B, int T, Err *err) {
    memset(tm, 0, sizeof *tm);
    if (!config_load(&tm->cfg, config_path, tm->origin, sizeof tm->origin, err)) return false;
    tm->model = model_create(&tm->cfg.model, B, T, err);
    if (!tm->model) return false;
    model_init(tm->model, tm->cfg.train.seed);
    return true;
}

void trained_model_close(TrainedModel *tm) {
    model_free(tm->model);
    tm->model = NULL;
}
