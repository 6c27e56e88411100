// safetensors.h — reading and writing the safetensors format (the file PyTorch/HF use for weights).
//
// Layout: 8-byte little-endian u64 header length n, then n bytes of JSON
//   {"__metadata__": {"key": "value", ...}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
// then the data section; offsets are relative to its start and tensors are contiguous, row-major,
// little-endian. We write F32 only, with the header padded by spaces to a multiple of 8 bytes (as the
// PyTorch writer does) and __metadata__ = {"format": "pt", "crc32.<name>": "<8 hex digits>" per tensor, ...}.
// We read F32, and BF16/F16 converted to float (a bf16 copy of a checkpoint loads into fp32 buffers).
// The host must be little-endian (checked at compile time).
#ifndef LL_SAFETENSORS_H
#define LL_SAFETENSORS_H

#include "common.h"

#define ST_MAX_DIMS 4  // TensorRef holds up to 4 dims (the models need at most 3: conv [C,1,K])

// A tensor in the caller's memory: `data` holds numel = prod(shape) floats, row-major.
// ndim 0 is a scalar (numel 1).
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    float *data;
} TensorRef;

// Number of elements of a TensorRef (1 for ndim 0).
int64_t tensor_numel(const TensorRef *t);
// "[2,3]" into buf (for messages); returns buf.
const char *tensor_shape_str(char *buf, size_t len, int ndim, const int64_t *shape);

// Writes n F32 tensors, in the given order, to `path`.
// meta_kv: extra string metadata as a NULL-terminated list k1, v1, k2, v2, ..., NULL (or NULL for none);
// keys must not be "format" or start with "crc32." (those are ours). Atomic: writes "<path>.tmp",
// fsyncs it, renames it over `path` and fsyncs the directory, so `path` is either the old or the new file.
bool safetensors_write(const char *path, const TensorRef *t, int n, const char *const *meta_kv, Err *err);

// Reads the n expected tensors into the caller's buffers (expected[i].data, prod(shape) floats each).
// Checks: header length and JSON are sane; every expected name is present with exactly the expected
// shape (a mismatch means the file was made for another model config); dtype F32, BF16 or F16;
// data offsets inside the file and of size dtype_size*numel (else the file is truncated); the tensor's
// CRC32 when the metadata records "crc32.<name>" (else "corrupt"). strict: a tensor in the file that is
// not expected is an error (they are listed). Errors name the file, the tensor and the fix.
// On failure the caller's buffers may be partially overwritten.
bool safetensors_read(const char *path, const TensorRef *expected, int n, bool strict, Err *err);

// Listing a file, for tools and tests.
#define ST_INFO_MAX_DIMS 8
typedef struct {
    char *name;                        // owned by the StFileInfo
    char dtype[8];                     // as in the file: "F32", "BF16", "F16", "I64", ...
    int ndim;
    int64_t shape[ST_INFO_MAX_DIMS];
    int64_t begin, end;                // byte offsets relative to the data section
} StTensorInfo;

typedef struct {
    StTensorInfo *tensors;             // in header order
    int n;
    int64_t header_len;                // n of the 8-byte prefix (JSON + padding)
    int64_t file_size;
} StFileInfo;

// Fills info with every tensor of the file (validated like safetensors_read, without reading data).
// Free with safetensors_info_free (also safe on a zeroed or failed info).
bool safetensors_list(const char *path, StFileInfo *info, Err *err);
void safetensors_info_free(StFileInfo *info);

// Reads __metadata__[key]: on success *value is a malloc'd copy, or NULL if the key (or the whole
// __metadata__ block) is absent. Returns false only if the file cannot be read or is malformed.
bool safetensors_get_metadata(const char *path, const char *key, char **value, Err *err);

#endif
