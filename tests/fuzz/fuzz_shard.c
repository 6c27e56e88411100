// fuzz_shard.c — libFuzzer harness of the token shard loader: one shard file opened as train_data is,
// then a few batches drawn (shuffled) and a seek.
#include "data.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path("shard_0.bin");
    fuzz_write(path, data, size);
    DataLoader *dl;
    Err err;
    if (!dataloader_open(&dl, path, 2, 4, 300, 7, true, &err)) return 0;
    int32_t in[8], tg[8];
    for (int i = 0; i < 3; i++) dataloader_next(dl, in, tg);
    DataPosition pos = dataloader_position(dl);
    pos.epoch++;
    dataloader_seek(dl, pos, &err);
    dataloader_next(dl, in, tg);
    dataloader_close(dl);
    return 0;
}
