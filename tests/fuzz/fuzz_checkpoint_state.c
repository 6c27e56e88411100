// fuzz_checkpoint_state.c — libFuzzer harness of what resume reads besides tensors: state.json (every
// field validated) and the checkpoint manifest (completeness, CRCs of the JSON files).
#include <sys/stat.h>

#include "checkpoint.h"
#include "fuzz_util.h"
#include "train_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_text(data, size);
    TrainState st;
    Err err;
    static const uint64_t seed = 42;
    const TrainStateExpect expect = {.step = 4, .num_windows = 1000, .seed = &seed};
    train_state_from_json(&st, text, "state.json", &expect, &err);
    free(text);
    // The same bytes as the manifest and the state.json of a checkpoint directory.
    char dir[300], path[400];
    snprintf(dir, sizeof dir, "%s", fuzz_path("run"));
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/step_00000004", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/step_00000004/manifest.json", dir);
    fuzz_write(path, data, size);
    snprintf(path, sizeof path, "%s/step_00000004/state.json", dir);
    fuzz_write(path, data, size);
    char out[512], *txt;
    if (checkpoint_resolve(dir, out, sizeof out, &err) && checkpoint_read_text(out, "state.json", &txt, &err)) free(txt);
    checkpoint_step(path);
    return 0;
}
