// testmodel.h — a helper of the tests that build whole models (test_model.c, test_passkey.c). Apart from
// testutil.h because some suites (test_checkpoint.c) define names of their own that model.h also defines.
#ifndef LL_TESTMODEL_H
#define LL_TESTMODEL_H

#include "model.h"
#include "testutil.h"

// A model of config c sized for batches (B, T), initialised from seed; the test fails with the reason when
// the config is refused.
static inline Model *tu_model(const ModelConfig *c, int B, int T, uint64_t seed) {
    Err err;
    Model *m = model_create(c, B, T, &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    model_init(m, seed);
    return m;
}

#endif
