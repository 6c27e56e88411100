// swiglu.c — see swiglu.h. Vector loops (activations.h) so the exponentials vectorise.
#include "swiglu.h"

#include "activations.h"

void swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i += ACT_VL) {
        int m = n - i < ACT_VL ? (int)(n - i) : ACT_VL;
        act_vf g = act_vload_n(gate + i, m), u = act_vload_n(up + i, m);
        act_vstore_n(out + i, act_vsilu(g) * u, m);
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                     int64_t n) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i += ACT_VL) {
        int m = n - i < ACT_VL ? (int)(n - i) : ACT_VL;
        act_vf g = act_vload_n(gate + i, m), u = act_vload_n(up + i, m), dy = act_vload_n(dout + i, m);
        act_vf s = act_vsigmoid(g);
        act_vf silu = g * s, dsilu = s * (1.0f + g * (1.0f - s));
        act_vstore_n(dgate + i, act_vload_n(dgate + i, m) + dy * u * dsilu, m);
        act_vstore_n(dup + i, act_vload_n(dup + i, m) + dy * silu, m);
    }
}
