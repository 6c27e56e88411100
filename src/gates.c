// gates.c — see gates.h.
#include "gates.h"

#include <math.h>

#include "activations.h"

void lambda_forward(float *lam, const float *dl, int ld_dl, const float *L, int64_t rows, int HL) {
#pragma omp parallel for schedule(static) if (rows > 64)
    for (int64_t n = 0; n < rows; n++)
        for (int j = 0; j < HL; j++) lam[n * HL + j] = act_softplus(L[j] * dl[n * ld_dl + j]);
}

void lambda_backward(float *ddl, int ld_ddl, float *dL, const float *dlam, const float *dl, int ld_dl,
                     const float *L, int64_t rows, int HL) {
    // d(L·dl) = dλ · σ(L·dl): to dl through L, to L through dl
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < rows; n++)
        for (int j = 0; j < HL; j++)
            ddl[n * ld_ddl + j] += dlam[n * HL + j] * act_softplus_grad(L[j] * dl[n * ld_dl + j]) * L[j];
#pragma omp parallel for schedule(static)
    for (int j = 0; j < HL; j++) {
        double acc = 0;
        for (int64_t n = 0; n < rows; n++) {
            const float u = L[j] * dl[n * ld_dl + j];
            acc += (double)dlam[n * HL + j] * act_softplus_grad(u) * dl[n * ld_dl + j];
        }
        dL[j] += (float)acc;
    }
}

void gdn_gates_forward(float *beta, float *g, const float *a, const float *b, int ld, const float *A_log,
                       const float *dt_bias, int64_t rows, int H) {
#pragma omp parallel for schedule(static) if (rows > 64)
    for (int64_t n = 0; n < rows; n++)
        for (int h = 0; h < H; h++) {
            beta[n * H + h] = act_sigmoid(b[n * ld + h]);
            g[n * H + h] = -expf(A_log[h]) * act_softplus(a[n * ld + h] + dt_bias[h]);
        }
}

void gdn_gates_backward(float *da, float *db, float *dA_log, float *ddt_bias, const float *dbeta, const float *dg,
                        const float *beta, const float *g, const float *a, int ld, const float *A_log,
                        const float *dt_bias, int64_t rows, int H) {
    // β = σ(b): db = dβ β(1−β);  g = −e^{A_log} softplus(u), u = a + dt_bias: du = dg (−e^{A_log}) σ(u)
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < rows; n++)
        for (int h = 0; h < H; h++) {
            const float bt = beta[n * H + h];
            db[n * ld + h] += dbeta[n * H + h] * bt * (1.0f - bt);
            da[n * ld + h] += dg[n * H + h] * -expf(A_log[h]) * act_softplus_grad(a[n * ld + h] + dt_bias[h]);
        }
    // d dt_bias = Σ du (the values just added to da are recomputed, not read back: da may hold other terms);
    // dA_log = Σ dg · g
    for (int h = 0; h < H; h++) {
        double sdu = 0, sda = 0;
        const float ea = -expf(A_log[h]);
        for (int64_t n = 0; n < rows; n++) {
            sdu += (double)dg[n * H + h] * ea * act_softplus_grad(a[n * ld + h] + dt_bias[h]);
            sda += (double)dg[n * H + h] * g[n * H + h];
        }
        ddt_bias[h] += (float)sdu;
        dA_log[h] += (float)sda;
    }
}
