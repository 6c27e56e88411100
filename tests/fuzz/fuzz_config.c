// fuzz_config.c — libFuzzer harness of the config reader: a file given to --config (our format or the
// paper's HF style), then the cross-checks, then the same text as a checkpoint's config.json.
#include "config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path("config.json");
    fuzz_write(path, data, size);
    Config cfg;
    Err err;
    if (config_load(&cfg, path, NULL, 0, &err)) {
        config_validate(&cfg, path, &err);
        free(config_to_json(&cfg));
        free(model_config_to_hf_json(&cfg.model));
    }
    char *text = fuzz_text(data, size);
    ModelConfig m;
    model_config_from_json(&m, text, "fuzz", &err);
    free(text);
    return 0;
}
