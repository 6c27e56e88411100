// param_table.h — the named parameter table: every tensor of a model with its PyTorch state_dict name,
// shape, offset into the flat parameter / gradient / moment buffers, and weight-decay flag.
// The same walk first counts (base and table NULL), then records the table, then aims weight views into
// params and into grads: every layout is written exactly once.
#ifndef LL_PARAM_TABLE_H
#define LL_PARAM_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char name[96];       // e.g. "model.layers.3.attn.q_proj.weight" / "backbone.layers.0.mixer.A_log"
    int ndim;
    int64_t shape[4];
    size_t offset;       // in floats, into the flat buffers
    size_t numel;
    bool decay;          // weight decay under DECAY_MATRICES (linear/conv/embedding weights)
} ParamInfo;

typedef struct {
    ParamInfo *table;    // NULL: don't record
    float *base;         // NULL: only count
    size_t used;         // floats laid out so far; tensors are packed (no padding), so the flat buffers
                         // are exactly the concatenation of the tensors in table order
    int n;               // tensors so far
} ParamTable;

// Appends a tensor of ndim (1..3) dims s0, s1, s2 and returns its view in tb->base (NULL while counting).
float *param_add(ParamTable *tb, const char *name, bool decay, int ndim, int64_t s0, int64_t s1, int64_t s2);

// Appends an entry that aliases an existing tensor (tied lm_head.weight: the state_dict lists both keys,
// the flat buffer holds the data once).
void param_add_alias(ParamTable *tb, const char *name, int existing);

#endif
