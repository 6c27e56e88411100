// model_io.h — a trained model for the tools (./generate, ./evaluate): the checkpoint of a run (its
// latest) or a step directory, its config, the weights loaded into a Model; and the model's tensors as
// safetensors references (shared with ./train).
#ifndef LL_MODEL_IO_H
#define LL_MODEL_IO_H

#include "config.h"
#include "model.h"
#include "safetensors.h"

// Named views into the model's flat parameters (n = model_num_tensors), for safetensors IO; free() them.
TensorRef *model_tensor_refs(Model *m);

typedef struct {
    Config cfg;          // the run's config (train_config.json of the checkpoint, or the --config file)
    char origin[1100];   // where it came from, for messages
    char dir[1024];      // the checkpoint directory ("" for a freshly initialised model)
    int64_t step;        // optimizer steps of the checkpoint (state.json), 0 for an initialised model
    Model *model;
} TrainedModel;

// Loads the checkpoint at `path` (a run directory: its latest complete checkpoint, as ./train --resume
// finds it; or a step directory), with activations for (B, T) batches. CRC-checked, strict names/shapes.
bool trained_model_open(TrainedModel *tm, const char *path, int B, int T, Err *err);
// A model of config file `config_path` (looked up as ./train does) with the paper's initialisation from
// its train.seed: untrained weights, for timing and memory measurements.
bool trained_model_init(TrainedModel *tm, const char *config_path, int B, int T, Err *err);
void trained_model_close(TrainedModel *tm);

#endif
