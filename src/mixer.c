// mixer.c — the model type → mixer family map (mixer.h). No default: the compiler names a type
// without a family (-Wswitch).
#include "mixer.h"

#include <stddef.h>

const MixerFamily *mixer_family(const ModelConfig *c, int layer) {
    (void)layer;  // every layer of the paper's models has the same mixer
    switch (c->type) {
        case MODEL_TRANSFORMER: return &MIXER_ATTENTION;
        case MODEL_MAMBA2:
        case MODEL_LOGLINEAR_MAMBA2: return &MIXER_MAMBA2;
        case MODEL_GATED_DELTANET:
        case MODEL_LOGLINEAR_GATED_DELTANET: return &MIXER_GDN;
    }
    return NULL;  // not a ModelType
}
