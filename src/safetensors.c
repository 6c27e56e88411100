// safetensors.c — see safetensors.h.
//
// Data moves with pread/write straight between the file and the caller's buffers (one copy, done by
// the kernel). Big tensors are cut into 32 MB pieces so that two threads can read and CRC them in
// parallel; piece CRCs are joined with zlib's crc32_combine.
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format stores little-endian data)"
#endif

// The reference implementation rejects headers above 100 MB; a header that large means corruption.
#define ST_MAX_HEADER 100000000ull
#define ST_PIECE ((size_t)32 << 20)
// JSON numbers are doubles: offsets and dims must be integers below 2^53 to be exact.
#define ST_MAX_JSON_INT 9007199254740992.0

int64_t tensor_numel(const TensorRef *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

// ---------------------------------------------------------------------------------------------
// Small growable string, for the header we write.

typedef struct {
    char *p;
    size_t len, cap;
} Str;

static void str_reserve(Str *s, size_t extra) {
    if (s->len + extra + 1 <= s->cap) return;
    size_t cap = s->cap ? s->cap : 1024;
    while (cap < s->len + extra + 1) cap *= 2;
    char *p = realloc(s->p, cap);
    if (!p) die("out of memory building a safetensors header (%zu bytes)", cap);
    s->p = p;
    s->cap = cap;
}

static void str_add(Str *s, const char *x, size_t k) {
    str_reserve(s, k);
    memcpy(s->p + s->len, x, k);
    s->len += k;
    s->p[s->len] = '\0';
}

static void str_puts(Str *s, const char *x) { str_add(s, x, strlen(x)); }

static void str_addf(Str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void str_addf(Str *s, const char *fmt, ...) {
    str_reserve(s, 64);
    for (;;) {
        size_t room = s->cap - s->len;
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(s->p + s->len, room, fmt, ap);
        va_end(ap);
        if (k < 0) die("vsnprintf failed");
        if ((size_t)k < room) {
            s->len += (size_t)k;
            return;
        }
        str_reserve(s, (size_t)k);  // too small: grow and format again
    }
}

// Appends x as a quoted JSON string. Bytes >= 0x80 pass through (UTF-8 in, UTF-8 out).
static void str_add_json(Str *s, const char *x) {
    str_add(s, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)x; *c; c++) {
        if (*c == '"' || *c == '\\') {
            char e[2] = {'\\', (char)*c};
            str_add(s, e, 2);
        } else if (*c < 0x20) {
            str_addf(s, "\\u%04x", *c);
        } else {
            str_add(s, (const char *)c, 1);
        }
    }
    str_add(s, "\"", 1);
}

// Formats a shape as "[a,b,c]" into buf.
const char *tensor_shape_str(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%" PRId64, i ? "," : "", shape[i]);
    if (k < len) snprintf(buf + k, len - k, "]");
    return buf;
}

// ---------------------------------------------------------------------------------------------
// IO helpers.

// Returns 0 on success, an errno value on error, -1 if the file ended early.
static int pread_all(int fd, void *buf, size_t len, int64_t off) {
    char *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (r == 0) return -1;
        p += r;
        len -= (size_t)r;
        off += r;
    }
    return 0;
}

// fsync the directory holding `path`, so a rename inside it survives a crash.
static bool fsync_parent_dir(const char *path, Err *err) {
    size_t k = strlen(path);
    char *dir = xmalloc(k + 2);
    memcpy(dir, path, k + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    Err e;
    const bool ok = fsync_dir(dir, &e);
    if (!ok) err_set(err, "%s (after writing %s)", e.msg, path);
    free(dir);
    return ok;
}

// ---------------------------------------------------------------------------------------------
// Pieces: (tensor, byte range) units of parallel work.

typedef struct {
    int tensor;
    size_t off, len;   // within the tensor's bytes
    uint32_t crc;
    int status;        // read: 0 ok, errno, or -1 for end of file
} Piece;

// Cuts each tensor's byte count into pieces of at most ST_PIECE bytes (none for empty tensors).
static Piece *make_pieces(const size_t *bytes, int n, int *npieces) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += (int64_t)((bytes[i] + ST_PIECE - 1) / ST_PIECE);
    Piece *pc = xcalloc((size_t)(total > 0 ? total : 1), sizeof(Piece));
    int k = 0;
    for (int i = 0; i < n; i++)
        for (size_t off = 0; off < bytes[i]; off += ST_PIECE)
            pc[k++] = (Piece){.tensor = i, .off = off, .len = LL_MIN(ST_PIECE, bytes[i] - off)};
    *npieces = k;
    return pc;
}

// Joins the piece CRCs (pieces of a tensor are consecutive and in order) into one CRC per tensor.
static void combine_crcs(const Piece *pc, int npieces, uint32_t *crc, int n) {
    for (int i = 0; i < n; i++) crc[i] = 0;
    for (int k = 0; k < npieces; k++) {
        const Piece *p = &pc[k];
        crc[p->tensor] = p->off == 0 ? p->crc
                                     : (uint32_t)crc32_combine(crc[p->tensor], p->crc, (z_off_t)p->len);
    }
}

// ---------------------------------------------------------------------------------------------
// Writing.

static bool check_name(const char *path, const TensorRef *t, int i, Err *err) {
    if (!t->name || !t->name[0])
        return err_set(err, "writing %s: tensor #%d has no name (program bug)", path, i);
    if (!strcmp(t->name, "__metadata__"))
        return err_set(err, "writing %s: '__metadata__' is reserved and cannot be a tensor name", path);
    if (t->ndim < 0 || t->ndim > ST_MAX_DIMS)
        return err_set(err, "writing %s: tensor '%s' has ndim %d, must be 0..%d (program bug)", path, t->name,
                       t->ndim, ST_MAX_DIMS);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || (double)t->shape[d] >= ST_MAX_JSON_INT)
            return err_set(err, "writing %s: tensor '%s' has invalid dim %" PRId64, path, t->name, t->shape[d]);
    if (!t->data && tensor_numel(t) > 0)
        return err_set(err, "writing %s: tensor '%s' has no data pointer (program bug)", path, t->name);
    return true;
}

bool safetensors_write(const char *path, const TensorRef *t, int n, const char *const *meta_kv, Err *err) {
    if (n < 0) return err_set(err, "writing %s: negative tensor count %d (program bug)", path, n);
    for (int i = 0; i < n; i++) {
        if (!check_name(path, &t[i], i, err)) return false;
        for (int j = 0; j < i; j++)
            if (!strcmp(t[i].name, t[j].name))
                return err_set(err, "writing %s: tensor name '%s' appears twice (program bug)", path, t[i].name);
    }
    for (const char *const *kv = meta_kv; kv && kv[0]; kv += 2) {
        if (!kv[1]) return err_set(err, "writing %s: metadata key '%s' has no value (program bug)", path, kv[0]);
        if (!strcmp(kv[0], "format") || !strncmp(kv[0], "crc32.", 6))
            return err_set(err, "writing %s: metadata key '%s' is reserved (program bug)", path, kv[0]);
    }

    // CRC of every tensor, pieces in parallel.
    size_t *bytes = xmalloc(sizeof(size_t) * (size_t)(n > 0 ? n : 1));
    uint32_t *crc = xmalloc(sizeof(uint32_t) * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) bytes[i] = (size_t)tensor_numel(&t[i]) * sizeof(float);
    int npieces;
    Piece *pc = make_pieces(bytes, n, &npieces);
#pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < npieces; k++)
        pc[k].crc = crc32_update(0, (const char *)t[pc[k].tensor].data + pc[k].off, pc[k].len);
    combine_crcs(pc, npieces, crc, n);
    free(pc);

    // Header: metadata first, then tensors in the caller's order with consecutive offsets.
    Str h = {0};
    str_puts(&h, "{\"__metadata__\":{\"format\":\"pt\"");
    for (int i = 0; i < n; i++) {
        str_add(&h, ",", 1);
        Str key = {0};
        str_addf(&key, "crc32.%s", t[i].name);
        str_add_json(&h, key.p);
        free(key.p);
        str_addf(&h, ":\"%08" PRIx32 "\"", crc[i]);
    }
    for (const char *const *kv = meta_kv; kv && kv[0]; kv += 2) {
        str_add(&h, ",", 1);
        str_add_json(&h, kv[0]);
        str_add(&h, ":", 1);
        str_add_json(&h, kv[1]);
    }
    str_add(&h, "}", 1);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        str_add(&h, ",", 1);
        str_add_json(&h, t[i].name);
        str_puts(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t[i].ndim; d++) str_addf(&h, "%s%" PRId64, d ? "," : "", t[i].shape[d]);
        str_addf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + bytes[i]);
        off += bytes[i];
    }
    str_add(&h, "}", 1);
    while (h.len % 8) str_add(&h, " ", 1);  // 8 + header_len stays 8-aligned, as PyTorch's writer does
    unsigned char len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (unsigned char)((uint64_t)h.len >> (8 * b));

    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    bool ok = false;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_set(err, "cannot create %s: %s (does the directory exist and is it writable?)", tmp, strerror(errno));
        goto done;
    }
    bool wrote = write_all(fd, len8, 8) && write_all(fd, h.p, h.len);
    for (int i = 0; wrote && i < n; i++) wrote = write_all(fd, t[i].data, bytes[i]);
    if (!wrote || fsync(fd) != 0) {
        err_set(err, "writing %s failed: %s (is the disk full?)", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto done;
    }
    if (close(fd) != 0) {
        err_set(err, "closing %s failed: %s (is the disk full?)", tmp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        err_set(err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    ok = fsync_parent_dir(path, err);
done:
    free(tmp);
    free(h.p);
    free(crc);
    free(bytes);
    return ok;
}

// ---------------------------------------------------------------------------------------------
// Reading: header.

typedef struct {
    int fd;
    int64_t file_size;
    int64_t header_len;
    int64_t data_start, data_size;  // data section: [data_start, file_size)
    cJSON *root;
    const cJSON *meta;              // __metadata__ object or NULL
} StHeader;

static void st_close(StHeader *h) {
    if (h->fd >= 0) close(h->fd);
    cJSON_Delete(h->root);
    h->fd = -1;
    h->root = NULL;
}

static bool parse_entry(const char *path, const StHeader *h, const cJSON *it, StTensorInfo *ti, Err *err);

static int cmp_extent(const void *a, const void *b) {
    const StTensorInfo *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

// The safetensors format requires the tensors to tile the data section exactly: sorted by offset, each
// starts where the previous one ends, the first at 0 and the last at the end of the file. Overlaps
// (two tensors sharing bytes) and gaps (bytes no tensor owns) mean a damaged or forged file. Every entry
// is validated on the way (parse_entry).
static bool check_tiling(const char *path, const StHeader *h, Err *err) {
    int n = 0;
    for (const cJSON *it = h->root->child; it; it = it->next) n++;
    StTensorInfo *ext = xcalloc((size_t)(n > 0 ? n : 1), sizeof *ext);
    int k = 0;
    bool ok = true;
    for (const cJSON *it = h->root->child; it && ok; it = it->next)
        if (strcmp(it->string, "__metadata__")) ok = parse_entry(path, h, it, &ext[k++], err);
    if (ok) qsort(ext, (size_t)k, sizeof *ext, cmp_extent);
    int64_t at = 0;
    for (int i = 0; i < k && ok; i++) {
        if (ext[i].begin < at)
            ok = err_set(err, "%s: tensor '%s' (data_offsets [%" PRId64 ",%" PRId64 "]) overlaps tensor '%s' "
                         "(which ends at %" PRId64 "); the file is corrupt", path, ext[i].name, ext[i].begin,
                         ext[i].end, ext[i - 1].name, at);
        else if (ext[i].begin > at)
            ok = err_set(err, "%s: data bytes [%" PRId64 ",%" PRId64 ") belong to no tensor (before tensor '%s'); "
                         "the tensors must tile the data section exactly: the file is corrupt", path, at,
                         ext[i].begin, ext[i].name);
        at = ext[i].end;
    }
    if (ok && at != h->data_size)
        ok = err_set(err, "%s: the tensors end at data byte %" PRId64 " but the data section has %" PRId64
                     " bytes (%" PRId64 " trailing bytes belong to no tensor); the file is corrupt", path, at,
                     h->data_size, h->data_size - at);
    free(ext);
    return ok;
}

static bool st_open(const char *path, StHeader *h, Err *err) {
    memset(h, 0, sizeof *h);
    struct stat st;
    if (!open_regular_file(path, "safetensors file", &h->fd, &st, err)) {
        h->fd = -1;
        return false;
    }
    h->file_size = (int64_t)st.st_size;
    unsigned char len8[8];
    if (h->file_size < 8 || pread_all(h->fd, len8, 8, 0) != 0) {
        st_close(h);
        return err_set(err, "%s: file is truncated: only %" PRId64 " bytes, less than the 8-byte header length "
                       "(not a safetensors file, or it was cut short: re-save it or use another checkpoint)",
                       path, h->file_size);
    }
    uint64_t n = 0;
    for (int b = 0; b < 8; b++) n |= (uint64_t)len8[b] << (8 * b);
    if (n < 2 || n > ST_MAX_HEADER) {
        st_close(h);
        return err_set(err, "%s: header length %" PRIu64 " is implausible (must be 2..%llu): not a safetensors "
                       "file, or it is corrupt", path, n, ST_MAX_HEADER);
    }
    if (n > (uint64_t)(h->file_size - 8)) {
        st_close(h);
        return err_set(err, "%s: file is truncated or corrupt: the header length says %" PRIu64 " bytes but "
                       "only %" PRId64 " bytes follow the length field (re-save it or use another checkpoint)",
                       path, n, h->file_size - 8);
    }
    h->header_len = (int64_t)n;
    h->data_start = 8 + (int64_t)n;
    h->data_size = h->file_size - h->data_start;
    char *buf = xmalloc((size_t)n + 1);
    int rc = pread_all(h->fd, buf, (size_t)n, 8);
    if (rc != 0) {
        free(buf);
        st_close(h);
        return err_set(err, "%s: cannot read the %" PRIu64 "-byte header: %s", path, n,
                       rc < 0 ? "unexpected end of file" : strerror(rc));
    }
    buf[n] = '\0';
    const char *end = NULL;
    h->root = cJSON_ParseWithLengthOpts(buf, (size_t)n, &end, false);
    if (!h->root) {
        int64_t at = end ? (int64_t)(end - buf) : -1;
        char near[24] = "";
        if (at >= 0 && at < (int64_t)n) snprintf(near, sizeof near, "%.20s", buf + at);
        for (char *c = near; *c; c++)
            if ((unsigned char)*c < 0x20) *c = ' ';
        free(buf);
        st_close(h);
        return err_set(err, "%s: the header is not valid JSON (error near byte %" PRId64 " of the file: '%s'); "
                       "the file is corrupt or not a safetensors file", path, 8 + at, near);
    }
    // Only space padding (any JSON whitespace) may follow the header object.
    for (const char *c = end; c < buf + n; c++) {
        if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r') {
            int64_t at = (int64_t)(c - buf);
            free(buf);
            st_close(h);
            return err_set(err, "%s: the header is not valid JSON (unexpected bytes after the header object at "
                           "byte %" PRId64 " of the file); the file is corrupt", path, 8 + at);
        }
    }
    free(buf);
    if (!cJSON_IsObject(h->root)) {
        st_close(h);
        return err_set(err, "%s: the header is not a JSON object; not a safetensors file", path);
    }
    h->meta = cJSON_GetObjectItemCaseSensitive(h->root, "__metadata__");
    if (h->meta) {
        if (!cJSON_IsObject(h->meta)) {
            st_close(h);
            return err_set(err, "%s: __metadata__ is not a JSON object; the file is corrupt", path);
        }
        for (const cJSON *m = h->meta->child; m; m = m->next)
            if (!cJSON_IsString(m)) {
                err_set(err, "%s: __metadata__ value of '%s' is not a string; the file is corrupt", path,
                        m->string ? m->string : "?");
                st_close(h);  // after formatting: m lives in the JSON tree
                return false;
            }
    }
    if (!check_tiling(path, h, err)) {
        st_close(h);
        return false;
    }
    return true;
}

static int64_t dtype_size(const char *dt) {
    static const struct { const char *name; int64_t size; } table[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
        {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1},   {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(dt, table[i].name)) return table[i].size;
    return 0;
}

static bool json_int(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d < ST_MAX_JSON_INT) || d != (double)(int64_t)d) return false;
    *out = (int64_t)d;
    return true;
}

// Validates one header entry: dtype known, shape of non-negative ints, offsets inside the data section
// and exactly dtype_size*numel long. ti->name borrows the JSON key.
static bool parse_entry(const char *path, const StHeader *h, const cJSON *it, StTensorInfo *ti, Err *err) {
    memset(ti, 0, sizeof *ti);
    ti->name = it->string;
    const char *name = it->string;
    if (!cJSON_IsObject(it))
        return err_set(err, "%s: header entry of tensor '%s' is not an object; the file is corrupt", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return err_set(err, "%s: header entry of tensor '%s' lacks a string 'dtype', an array 'shape' or an array "
                       "'data_offsets'; the file is corrupt", path, name);
    int64_t dsize = dtype_size(dt->valuestring);
    if (!dsize)
        return err_set(err, "%s: tensor '%s' has unknown dtype '%s'", path, name, dt->valuestring);
    snprintf(ti->dtype, sizeof ti->dtype, "%s", dt->valuestring);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_INFO_MAX_DIMS)
        return err_set(err, "%s: tensor '%s' has %d dims, more than the %d supported", path, name, ndim,
                       ST_INFO_MAX_DIMS);
    ti->ndim = ndim;
    int64_t numel = 1;
    bool overflow = false;
    int d = 0;
    for (const cJSON *s = shape->child; s; s = s->next, d++) {
        if (!json_int(s, &ti->shape[d]))
            return err_set(err, "%s: tensor '%s' has a shape entry that is not a non-negative integer; the file "
                           "is corrupt", path, name);
        // Checked before multiplying (a signed overflow is undefined); once too large, stop multiplying.
        if (overflow) continue;
        if (ti->shape[d] > 0 && numel > INT64_MAX / 16 / ti->shape[d]) overflow = true;
        else numel *= ti->shape[d];
    }
    int64_t b, e;
    if (overflow || cJSON_GetArraySize(offs) != 2 || !json_int(offs->child, &b) ||
        !json_int(offs->child->next, &e) || e < b)
        return err_set(err, "%s: tensor '%s' has invalid shape or data_offsets; the file is corrupt", path, name);
    ti->begin = b;
    ti->end = e;
    if (e - b != numel * dsize) {
        char sb[128];
        return err_set(err, "%s: tensor '%s' (%s %s) needs %" PRId64 " bytes but its data_offsets [%" PRId64
                       ",%" PRId64 "] span %" PRId64 "; the file is corrupt", path, name, ti->dtype,
                       tensor_shape_str(sb, sizeof sb, ti->ndim, ti->shape), numel * dsize, b, e, e - b);
    }
    if (e > h->data_size)
        return err_set(err, "%s: file is truncated: tensor '%s' ends at byte %" PRId64 " of the data section but "
                       "the file holds only %" PRId64 " data bytes (file size %" PRId64 ", needs at least %" PRId64
                       "); it was cut short (interrupted copy or full disk?) — re-save it or use another "
                       "checkpoint", path, name, e, h->data_size, h->file_size, h->data_start + e);
    return true;
}

// __metadata__[prefix + name] as a string, or NULL.
static const char *meta_lookup(const StHeader *h, const char *prefix, const char *name) {
    if (!h->meta) return NULL;
    size_t pl = strlen(prefix);
    for (const cJSON *m = h->meta->child; m; m = m->next)
        if (m->string && !strncmp(m->string, prefix, pl) && !strcmp(m->string + pl, name)) return m->valuestring;
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// Reading: data.

static float bf16_to_f32(uint16_t v) {
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float f16_to_f32(uint16_t v) {
    uint32_t sign = (uint32_t)(v & 0x8000) << 16, exp = (v >> 10) & 0x1f, man = v & 0x3ff, bits;
    if (exp == 0) {  // zero or subnormal: man * 2^-24, exact in float
        float f = (float)man * 0x1p-24f;
        memcpy(&bits, &f, 4);
        bits |= sign;
    } else if (exp == 31) {  // inf / nan
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

typedef struct {
    int64_t numel, bytes;     // bytes as stored in the file
    int64_t file_off;         // absolute offset of the stored bytes
    char *raw;                // where the stored bytes are read to (inside the caller's buffer)
    int kind;                 // 0 F32, 1 BF16, 2 F16
    bool has_crc;
    uint32_t want_crc;
} ReadJob;

bool safetensors_read(const char *path, const TensorRef *expected, int n, bool strict, Err *err) {
    StHeader h;
    if (!st_open(path, &h, err)) return false;
    ReadJob *jobs = xcalloc((size_t)(n > 0 ? n : 1), sizeof(ReadJob));
    bool ok = false;
    char s1[128], s2[128];

    // Pass 1: every check that needs only the header, so that a bad file fails before any data moves.
    for (int i = 0; i < n; i++) {
        const TensorRef *t = &expected[i];
        if (!t->name || t->ndim < 0 || t->ndim > ST_MAX_DIMS) {
            err_set(err, "reading %s: expected tensor #%d has no name or a bad ndim (program bug)", path, i);
            goto done;
        }
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(h.root, t->name);
        if (!it || !strcmp(t->name, "__metadata__")) {
            err_set(err, "%s: tensor '%s' is missing (the file has %d tensors); it was written for a different "
                    "model type or config — pass the matching --config", path, t->name,
                    cJSON_GetArraySize(h.root) - (h.meta ? 1 : 0));
            goto done;
        }
        StTensorInfo ti;
        if (!parse_entry(path, &h, it, &ti, err)) goto done;
        bool same = ti.ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = ti.shape[d] == t->shape[d];
        if (!same) {
            err_set(err, "%s: tensor '%s' has shape %s but the model config needs %s; the file was written for a "
                    "different model config — pass the matching --config", path, t->name,
                    tensor_shape_str(s1, sizeof s1, ti.ndim, ti.shape),
                    tensor_shape_str(s2, sizeof s2, t->ndim, t->shape));
            goto done;
        }
        ReadJob *j = &jobs[i];
        j->kind = !strcmp(ti.dtype, "F32") ? 0 : !strcmp(ti.dtype, "BF16") ? 1 : !strcmp(ti.dtype, "F16") ? 2 : -1;
        if (j->kind < 0) {
            err_set(err, "%s: tensor '%s' has dtype %s; only F32, BF16 and F16 can be loaded — convert the file to "
                    "F32", path, t->name, ti.dtype);
            goto done;
        }
        j->numel = tensor_numel(t);
        j->bytes = ti.end - ti.begin;
        j->file_off = h.data_start + ti.begin;
        if (j->numel > 0 && !t->data) {
            err_set(err, "reading %s: expected tensor '%s' has no buffer (program bug)", path, t->name);
            goto done;
        }
        // 16-bit data is read into the upper half of the float buffer and widened in place (see below).
        j->raw = j->kind == 0 ? (char *)t->data : (char *)t->data + 2 * j->numel;
        const char *crc = meta_lookup(&h, "crc32.", t->name);
        if (crc) {
            char *endp;
            unsigned long v = strtoul(crc, &endp, 16);
            if (strlen(crc) != 8 || *endp) {
                err_set(err, "%s: metadata 'crc32.%s' = '%s' is not 8 hex digits; the file is corrupt", path,
                        t->name, crc);
                goto done;
            }
            j->has_crc = true;
            j->want_crc = (uint32_t)v;
        }
    }
    if (strict) {
        Str list = {0};
        int extra = 0;
        for (const cJSON *it = h.root->child; it; it = it->next) {
            if (!strcmp(it->string, "__metadata__")) continue;
            bool found = false;
            for (int i = 0; i < n && !found; i++) found = !strcmp(it->string, expected[i].name);
            if (found) continue;
            if (extra < 6) str_addf(&list, "%s'%s'", extra ? ", " : "", it->string);
            extra++;
        }
        if (extra) {
            err_set(err, "%s: %d unexpected tensor%s not used by this model config: %s%s; the file was written for "
                    "a different model config — pass the matching --config", path, extra, extra > 1 ? "s" : "",
                    list.p, extra > 6 ? ", ..." : "");
            free(list.p);
            goto done;
        }
    }

    // Pass 2: read and CRC pieces in parallel (pread is positional, so threads share the descriptor).
    {
        size_t *bytes = xmalloc(sizeof(size_t) * (size_t)(n > 0 ? n : 1));
        uint32_t *crc = xmalloc(sizeof(uint32_t) * (size_t)(n > 0 ? n : 1));
        for (int i = 0; i < n; i++) bytes[i] = (size_t)jobs[i].bytes;
        int npieces;
        Piece *pc = make_pieces(bytes, n, &npieces);
        int fd = h.fd;
#pragma omp parallel for schedule(dynamic, 1)
        for (int k = 0; k < npieces; k++) {
            const ReadJob *j = &jobs[pc[k].tensor];
            pc[k].status = pread_all(fd, j->raw + pc[k].off, pc[k].len, j->file_off + (int64_t)pc[k].off);
            if (pc[k].status == 0) pc[k].crc = crc32_update(0, j->raw + pc[k].off, pc[k].len);
        }
        bool io_ok = true;
        for (int k = 0; k < npieces && io_ok; k++) {
            if (pc[k].status != 0) {
                err_set(err, "%s: reading tensor '%s' failed: %s", path, expected[pc[k].tensor].name,
                        pc[k].status < 0 ? "unexpected end of file (was the file truncated while loading?)"
                                         : strerror(pc[k].status));
                io_ok = false;
            }
        }
        if (io_ok) combine_crcs(pc, npieces, crc, n);
        for (int i = 0; i < n && io_ok; i++) {
            if (jobs[i].has_crc && crc[i] != jobs[i].want_crc) {
                err_set(err, "%s: tensor '%s' is corrupt: the CRC32 of its data is %08" PRIx32 " but the file's "
                        "metadata records %08" PRIx32 "; the file was damaged after it was written — use another "
                        "checkpoint", path, expected[i].name, crc[i], jobs[i].want_crc);
                io_ok = false;
            }
        }
        free(pc);
        free(crc);
        free(bytes);
        if (!io_ok) goto done;
    }

    // Pass 3: widen 16-bit tensors in place. Element i (stored at byte 2*numel + 2*i) is read before
    // float i (bytes 4*i..4*i+3) is written, and 4*i+3 < 2*numel + 2*(i+1) for every i < numel, so the
    // forward loop never overwrites a value it still needs.
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < n; i++) {
        const ReadJob *j = &jobs[i];
        if (j->kind == 0) continue;
        float *out = expected[i].data;
        for (int64_t e = 0; e < j->numel; e++) {
            uint16_t v;
            memcpy(&v, j->raw + 2 * e, 2);
            out[e] = j->kind == 1 ? bf16_to_f32(v) : f16_to_f32(v);
        }
    }
    ok = true;
done:
    free(jobs);
    st_close(&h);
    return ok;
}

// ---------------------------------------------------------------------------------------------
// Listing and metadata.

void safetensors_info_free(StFileInfo *info) {
    if (!info) return;
    for (int i = 0; i < info->n; i++) free(info->tensors[i].name);
    free(info->tensors);
    memset(info, 0, sizeof *info);
}

bool safetensors_list(const char *path, StFileInfo *info, Err *err) {
    memset(info, 0, sizeof *info);
    StHeader h;
    if (!st_open(path, &h, err)) return false;
    int count = 0;
    for (const cJSON *it = h.root->child; it; it = it->next)
        if (strcmp(it->string, "__metadata__")) count++;
    info->tensors = xcalloc((size_t)(count > 0 ? count : 1), sizeof(StTensorInfo));
    info->header_len = h.header_len;
    info->file_size = h.file_size;
    for (const cJSON *it = h.root->child; it; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) continue;
        StTensorInfo *ti = &info->tensors[info->n];
        if (!parse_entry(path, &h, it, ti, err)) {
            ti->name = NULL;
            st_close(&h);
            safetensors_info_free(info);
            return false;
        }
        ti->name = strdup(it->string);
        if (!ti->name) die("out of memory");
        info->n++;
    }
    st_close(&h);
    return true;
}

bool safetensors_get_metadata(const char *path, const char *key, char **value, Err *err) {
    *value = NULL;
    StHeader h;
    if (!st_open(path, &h, err)) return false;
    const char *v = meta_lookup(&h, "", key);
    if (v) {
        *value = strdup(v);
        if (!*value) die("out of memory");
    }
    st_close(&h);
    return true;
}
