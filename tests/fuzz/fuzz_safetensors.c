// fuzz_safetensors.c — libFuzzer harness of the safetensors reader: listing a file, then a strict read of
// every tensor it lists (when small enough to allocate), as --init-from and resume do.
#include "fuzz_util.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path("x.safetensors");
    fuzz_write(path, data, size);
    StFileInfo info;
    Err err;
    if (!safetensors_list(path, &info, &err)) return 0;
    TensorRef refs[16];
    int n = 0;
    int64_t total = 0;
    bool readable = info.n <= 16;
    for (int i = 0; i < info.n && readable; i++) {
        const StTensorInfo *ti = &info.tensors[i];
        int64_t numel = 1;
        for (int d = 0; d < ti->ndim; d++) numel *= ti->shape[d];   // bounded: parse_entry checked it
        readable = ti->ndim <= ST_MAX_DIMS && numel <= (1 << 16);
        refs[n] = (TensorRef){.name = ti->name, .ndim = ti->ndim};
        for (int d = 0; d < ti->ndim && readable; d++) refs[n].shape[d] = ti->shape[d];
        total += numel;
        n++;
    }
    if (readable) {
        float *buf = calloc((size_t)(total > 0 ? total : 1), sizeof(float));
        int64_t off = 0;
        for (int i = 0; i < n; i++) {
            refs[i].data = buf + off;
            off += tensor_numel(&refs[i]);
        }
        safetensors_read(path, refs, n, true, &err);
        free(buf);
    }
    safetensors_info_free(&info);
    return 0;
}
