/* data: the idx importer, HDF5 data sets, the validation split and batches; see data.h. */
#define _POSIX_C_SOURCE 200809L
#include "data.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common.h"
#include "h5.h"
#include "mem.h"
#include "rng.h"

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define IDX_MAX_SIDE 65535
#define FASHION_CLASSES 10
#define FASHION_CLASS_NAMES \
    "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
#define IMPORT_GZIP_LEVEL 4

/* ---- idx files ------------------------------------------------------------------------ */

/* Reads up to len bytes; returns the bytes read (short only at the end of the data), or -1
 * with an error naming path (a read error, or a damaged or cut-off gzip stream). */
static long long idx_read(gzFile gz, const char *path, unsigned char *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        size_t want = len - done > (1u << 30) ? (1u << 30) : len - done;
        int got = gzread(gz, buf + done, (unsigned)want);
        if (got <= 0)
            break; /* the end, or an error reported below */
        done += (size_t)got;
    }
    int code;
    const char *msg = gzerror(gz, &code);
    size_t path_len = strlen(path); /* zlib's message repeats the path: drop it */
    if (!strncmp(msg, path, path_len) && !strncmp(msg + path_len, ": ", 2))
        msg += path_len + 2;
    if (code == Z_ERRNO)
        return offnas_error("%s: read error: %s", path, strerror(errno));
    if (code == Z_BUF_ERROR)
        return offnas_error("%s: truncated gzip data (%s)", path, msg);
    if (code != Z_OK)
        return offnas_error("%s: damaged gzip data: %s", path, msg);
    return (long long)done;
}

static uint32_t big_endian32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* What an idx header announces: count items of rows x cols bytes (1 x 1 for labels). */
struct idx_header {
    uint32_t count, rows, cols;
    size_t item, bytes; /* rows * cols, count * item */
};

/* Reads and checks the header of an idx file of magic expect_magic (what: "images" or
 * "labels"). Returns 0, or -1 with an error naming path. */
static int idx_read_header(gzFile gz, const char *path, uint32_t expect_magic, const char *what,
                           struct idx_header *h)
{
    unsigned char header[16];
    size_t header_len = expect_magic == IDX_IMAGES_MAGIC ? 16 : 8;
    long long got = idx_read(gz, path, header, header_len);
    if (got < 0)
        return -1;
    if (got < 4)
        return offnas_error("%s: truncated: %lld bytes, too short for an idx header", path, got);
    uint32_t magic = big_endian32(header);
    if (magic != expect_magic)
        return offnas_error("%s: wrong magic 0x%08x, expected 0x%08x (idx %s)", path, magic,
                            expect_magic, what);
    if ((size_t)got < header_len)
        return offnas_error("%s: truncated idx header (%lld of %zu bytes)", path, got,
                            header_len);
    uint32_t n = big_endian32(header + 4);
    uint32_t r = 1, c = 1;
    if (expect_magic == IDX_IMAGES_MAGIC) {
        r = big_endian32(header + 8);
        c = big_endian32(header + 12);
        if (r == 0 || c == 0 || r > IDX_MAX_SIDE || c > IDX_MAX_SIDE)
            return offnas_error("%s: bad image size %ux%u in the header", path, r, c);
    }
#if LONG_MAX < UINT32_MAX
    if (n > (uint32_t)LONG_MAX)
        return offnas_error("%s: bad count %u in the header", path, n);
#endif
    size_t item = (size_t)r * c;
    if (item != 0 && (size_t)n > SIZE_MAX / item)
        return offnas_error("%s: header announces too much data (%u %s of %ux%u)", path, n, what,
                            r, c);
    *h = (struct idx_header){n, r, c, item, (size_t)n * item};
    return 0;
}

/* Reads the h->bytes of data that follow the header into a malloc'd buffer. Returns it, or
 * NULL with an error naming path (a read error, or fewer bytes than announced). */
static unsigned char *idx_read_body(gzFile gz, const char *path, const char *what,
                                    const struct idx_header *h)
{
    size_t expected = h->bytes;
    /* Grow the buffer as the data arrives, so that a damaged header announcing gigabytes does
     * not allocate them before finding out that the file is short. */
    size_t capacity = expected < (1u << 20) ? expected : (1u << 20), have = 0;
    unsigned char *data = offnas_malloc(capacity);
    while (have < expected) {
        if (have == capacity) {
            capacity = capacity > expected / 2 ? expected : 2 * capacity;
            unsigned char *grown = realloc(data, capacity);
            if (!grown) {
                offnas_error("%s: out of memory reading %zu bytes", path, expected);
                free(data);
                return NULL;
            }
            data = grown;
        }
        long long got = idx_read(gz, path, data + have, capacity - have);
        if (got < 0) {
            free(data);
            return NULL;
        }
        have += (size_t)got;
        if (have < capacity)
            break; /* end of data */
    }
    if (have < expected) {
        offnas_error("%s: truncated: header announces %u %s (%zu bytes), file holds %zu bytes "
                     "(%zu %s)",
                     path, h->count, what, expected, have, have / h->item, what);
        free(data);
        return NULL;
    }
    return data;
}

/* Checks that nothing follows the announced data. Returns 0, or -1 with an error naming path. */
static int idx_expect_end(gzFile gz, const char *path, const char *what,
                          const struct idx_header *h)
{
    unsigned char extra[4096];
    long long got = idx_read(gz, path, extra, sizeof extra);
    if (got <= 0)
        return got < 0 ? -1 : 0;
    long long more = got;
    while ((got = idx_read(gz, path, extra, sizeof extra)) > 0)
        more += got;
    if (got < 0)
        return -1;
    return offnas_error("%s: size mismatch: header announces %u %s (%zu bytes), file holds %lld "
                        "more bytes",
                        path, h->count, what, h->bytes, more);
}

unsigned char *data_read_idx(const char *path, uint32_t expect_magic, long *count, int *rows,
                             int *cols)
{
    OFFNAS_ASSERT(expect_magic == IDX_IMAGES_MAGIC || expect_magic == IDX_LABELS_MAGIC);
    const char *what = expect_magic == IDX_IMAGES_MAGIC ? "images" : "labels";
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        offnas_error("%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        return NULL;
    }
    gzbuffer(gz, 1 << 17);
    struct idx_header h = {0};
    unsigned char *data = NULL;
    if (idx_read_header(gz, path, expect_magic, what, &h) ||
        !(data = idx_read_body(gz, path, what, &h)) || idx_expect_end(gz, path, what, &h)) {
        free(data);
        gzclose(gz);
        return NULL;
    }
    if (gzclose(gz) != Z_OK) {
        offnas_error("%s: read error on close", path);
        free(data);
        return NULL;
    }
    *count = (long)h.count;
    if (rows)
        *rows = (int)h.rows;
    if (cols)
        *cols = (int)h.cols;
    return data;
}

/* ---- import --------------------------------------------------------------------------- */

/* Puts dir/name.gz into buf, or dir/name when only the uncompressed file is there. */
static void idx_path(char *buf, size_t size, const char *dir, const char *name)
{
    snprintf(buf, size, "%s/%s.gz", dir, name);
    if (access(buf, F_OK) != 0) {
        char plain[H5_PATH_MAX];
        snprintf(plain, sizeof plain, "%s/%s", dir, name);
        if (access(plain, F_OK) == 0)
            snprintf(buf, size, "%s", plain);
    }
}

struct idx_split {
    unsigned char *images, *labels;
    long count;
    int rows, cols;
};

/* Reads and cross-checks the images and labels of one split. */
static int read_split(struct idx_split *s, const char *dir, const char *prefix)
{
    char images_path[H5_PATH_MAX], labels_path[H5_PATH_MAX], name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    idx_path(images_path, sizeof images_path, dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    idx_path(labels_path, sizeof labels_path, dir, name);
    long label_count = 0;
    s->images = data_read_idx(images_path, IDX_IMAGES_MAGIC, &s->count, &s->rows, &s->cols);
    if (!s->images)
        return -1;
    s->labels = data_read_idx(labels_path, IDX_LABELS_MAGIC, &label_count, NULL, NULL);
    if (!s->labels)
        return -1;
    if (s->count == 0)
        return offnas_error("%s: holds no images", images_path);
    if (label_count != s->count)
        return offnas_error("%s: %ld labels, but %s holds %ld images", labels_path, label_count,
                            images_path, s->count);
    for (long i = 0; i < s->count; i++)
        if (s->labels[i] >= FASHION_CLASSES)
            return offnas_error("%s: label %ld is %d, not in 0..%d", labels_path, i,
                                s->labels[i], FASHION_CLASSES - 1);
    return 0;
}

/* Writes one split as group/images [N,1,H,W] and group/labels [N]. */
static int write_split(hid_t file, const char *group, const struct idx_split *s)
{
    char name[64];
    hsize_t image_dims[4] = {(hsize_t)s->count, 1, (hsize_t)s->rows, (hsize_t)s->cols};
    hsize_t label_dims[1] = {(hsize_t)s->count};
    snprintf(name, sizeof name, "/%s/images", group);
    OFFNAS_TRY(h5_write(file, name, H5_U8, 4, image_dims, s->images, IMPORT_GZIP_LEVEL));
    snprintf(name, sizeof name, "/%s/labels", group);
    OFFNAS_TRY(h5_write(file, name, H5_U8, 1, label_dims, s->labels, IMPORT_GZIP_LEVEL));
    return 0;
}

int data_import_idx(const char *dir, const char *out_path)
{
    struct idx_split train = {0}, test = {0};
    int rc = -1;
    hid_t file = -1;
    char tmp[H5_PATH_MAX], source[H5_PATH_MAX + 64];
    if (read_split(&train, dir, "train") || read_split(&test, dir, "t10k"))
        goto done;
    if (train.rows != test.rows || train.cols != test.cols) {
        offnas_error("%s: training images are %dx%d but test images %dx%d", dir, train.rows,
                     train.cols, test.rows, test.cols);
        goto done;
    }
    file = h5_create_tmp(out_path, tmp, sizeof tmp);
    if (file < 0)
        goto done;
    snprintf(source, sizeof source, "fashion-mnist idx files from %s", dir);
    if (write_split(file, "train", &train) || write_split(file, "test", &test) ||
        h5_attr_set_int(file, "classes", FASHION_CLASSES) ||
        h5_attr_set_string(file, "source", source) ||
        h5_attr_set_string(file, "class_names", FASHION_CLASS_NAMES)) {
        h5_abort(file, tmp);
        goto done;
    }
    rc = h5_commit(file, tmp, out_path);
done:
    free(train.images);
    free(train.labels);
    free(test.images);
    free(test.labels);
    return rc;
}

/* ---- loading -------------------------------------------------------------------------- */

void data_free(struct dataset *ds)
{
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

/* The body of data_load, with the file open; ds is filled as it goes (freed by the caller on
 * failure). */
static int load_open(struct dataset *ds, hid_t file, const char *path, const char *split,
                     long start, long count)
{
    char images_name[256], labels_name[256];
    snprintf(images_name, sizeof images_name, "/%s/images", split);
    snprintf(labels_name, sizeof labels_name, "/%s/labels", split);
    int64_t classes;
    OFFNAS_TRY(h5_attr_get_int(file, "classes", &classes));
    if (classes < 1 || classes > 256)
        return offnas_error("%s: attribute classes is %lld, not in 1..256", path,
                            (long long)classes);
    hsize_t image_dims[4], label_dims[1];
    OFFNAS_TRY(h5_shape(file, images_name, H5_U8, 4, image_dims));
    OFFNAS_TRY(h5_shape(file, labels_name, H5_U8, 1, label_dims));
    if (image_dims[0] != label_dims[0])
        return offnas_error("%s: %s holds %llu images but %s %llu labels", path, images_name,
                            (unsigned long long)image_dims[0], labels_name,
                            (unsigned long long)label_dims[0]);
    for (int i = 1; i < 4; i++)
        if (image_dims[i] < 1 || image_dims[i] > IDX_MAX_SIDE)
            return offnas_error("%s: %s: bad shape [%llu,%llu,%llu,%llu]", path, images_name,
                                (unsigned long long)image_dims[0],
                                (unsigned long long)image_dims[1],
                                (unsigned long long)image_dims[2],
                                (unsigned long long)image_dims[3]);
    hsize_t total = image_dims[0];
    if (start < 0 || (hsize_t)start > total)
        return offnas_error("%s: %s: start %ld outside its %llu images", path, images_name,
                            start, (unsigned long long)total);
    if (count <= 0)
        count = (long)(total - (hsize_t)start);
    if ((hsize_t)count > total - (hsize_t)start)
        return offnas_error("%s: %s: images [%ld, %ld) outside its %llu images", path,
                            images_name, start, start + count, (unsigned long long)total);
    int C = (int)image_dims[1], H = (int)image_dims[2], W = (int)image_dims[3];
    size_t image_bytes = (size_t)C * H * W;
    if ((size_t)count > SIZE_MAX / image_bytes)
        return offnas_error("%s: %s: too large", path, images_name);
    /* a shape announcing terabytes is refused before offnas_malloc aborts on it */
    char what[H5_PATH_MAX + 320];
    snprintf(what, sizeof what, "%s: %s: %ld images of %dx%dx%d", path, images_name, count,
             (int)image_dims[1], (int)image_dims[2], (int)image_dims[3]);
    OFFNAS_TRY(mem_check(what, (double)count * (double)image_bytes * (image_dims[1] > 1 ? 2 : 1)));

    ds->count = count;
    ds->channels = C;
    ds->height = H;
    ds->width = W;
    ds->classes = (int)classes;
    ds->images = offnas_malloc((size_t)count * image_bytes);
    ds->labels = offnas_malloc((size_t)count);
    OFFNAS_TRY(h5_read_rows(file, labels_name, H5_U8, 1, (hsize_t)start, (hsize_t)count,
                            ds->labels));
    for (long i = 0; i < count; i++)
        if (ds->labels[i] >= classes)
            return offnas_error("%s: %s[%ld] is %d, not below classes %lld", path, labels_name,
                                start + i, ds->labels[i], (long long)classes);
    if (C == 1)
        return h5_read_rows(file, images_name, H5_U8, 4, (hsize_t)start, (hsize_t)count,
                            ds->images);
    /* (count, C, H, W) in the file, (count, H, W, C) in memory. */
    unsigned char *planar = offnas_malloc((size_t)count * image_bytes);
    if (h5_read_rows(file, images_name, H5_U8, 4, (hsize_t)start, (hsize_t)count, planar)) {
        free(planar);
        return -1;
    }
    size_t plane = (size_t)H * W;
    for (long n = 0; n < count; n++) {
        const unsigned char *src = planar + (size_t)n * image_bytes;
        unsigned char *dst = ds->images + (size_t)n * image_bytes;
        for (size_t p = 0; p < plane; p++)
            for (int c = 0; c < C; c++)
                dst[p * C + c] = src[(size_t)c * plane + p];
    }
    free(planar);
    return 0;
}

int data_load(struct dataset *ds, const char *path, const char *split, long start, long count)
{
    memset(ds, 0, sizeof *ds);
    if (!split || !*split || strchr(split, '/') || strlen(split) > 128)
        return offnas_error("%s: bad split name '%s'", path, split ? split : "");
    hid_t file = h5_open_read(path);
    if (file < 0)
        return -1;
    int rc = load_open(ds, file, path, split, start, count);
    h5_close(file);
    if (rc)
        data_free(ds);
    return rc;
}

/* ---- validation split ----------------------------------------------------------------- */

/* Uniform in [0, n) without modulo bias (rejection). Not rng.h's rng_below (a multiply-shift):
 * this one fixes which images form the validation split of existing results. */
static uint64_t split_below(struct rng *rng, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = rng_next(rng);
    while (x >= limit);
    return x % n;
}

void data_select(struct dataset *out, const struct dataset *in, const unsigned char *mark,
                 unsigned char want)
{
    size_t image_bytes = (size_t)in->channels * in->height * in->width;
    long count = 0;
    for (long i = 0; i < in->count; i++)
        count += mark[i] == want;
    *out = *in;
    out->count = count;
    out->images = offnas_malloc((size_t)(count ? count : 1) * image_bytes);
    out->labels = offnas_malloc((size_t)(count ? count : 1));
    long k = 0;
    for (long i = 0; i < in->count; i++) {
        if (mark[i] != want)
            continue;
        memcpy(out->images + (size_t)k * image_bytes, in->images + (size_t)i * image_bytes,
               image_bytes);
        out->labels[k++] = in->labels[i];
    }
}

unsigned char *data_validation_mask(long count, long val_size, uint64_t seed)
{
    if (val_size < 0 || val_size >= count) {
        offnas_error("validation size %ld not in [0, %ld) (the training set holds %ld images)",
                     val_size, count, count);
        return NULL;
    }
    /* The first val_size steps of a Fisher-Yates shuffle pick a uniform random subset. */
    long *order = offnas_malloc((size_t)count * sizeof *order);
    unsigned char *is_val = offnas_calloc((size_t)count, 1);
    for (long i = 0; i < count; i++)
        order[i] = i;
    struct rng rng;
    rng_seed(&rng, seed, 0);
    for (long i = 0; i < val_size; i++) {
        long j = i + (long)split_below(&rng, (uint64_t)(count - i));
        long t = order[i];
        order[i] = order[j];
        order[j] = t;
        is_val[order[i]] = 1;
    }
    free(order);
    return is_val;
}

int data_split_validation(const struct dataset *full, long val_size, uint64_t seed,
                          struct dataset *train, struct dataset *val)
{
    unsigned char *is_val = data_validation_mask(full->count, val_size, seed);
    if (!is_val)
        return -1;
    data_select(train, full, is_val, 0);
    data_select(val, full, is_val, 1);
    free(is_val);
    return 0;
}

int data_rows(const char *path, const char *split, long *count)
{
    char name[256];
    snprintf(name, sizeof name, "/%s/labels", split);
    hid_t file = h5_open_read(path);
    if (file < 0)
        return -1;
    hsize_t dims[1];
    int rc = h5_shape(file, name, H5_U8, 1, dims);
    h5_close(file);
    *count = rc ? 0 : (long)dims[0];
    return rc;
}

/* ---- batches -------------------------------------------------------------------------- */

/* Source sampling of bilinear resizing with align_corners = false, as PyTorch computes it:
 * x_src = max((x + 0.5) * in / out - 0.5, 0); lo = floor, hi = lo + 1 clamped, frac = weight
 * of hi. */
static void bilinear_source(int x, int in, int out, int *lo, int *hi, float *frac)
{
    float scale = (float)in / (float)out;
    float src = ((float)x + 0.5f) * scale - 0.5f;
    if (src < 0)
        src = 0;
    int i = (int)src;
    if (i > in - 1)
        i = in - 1;
    *lo = i;
    *hi = i < in - 1 ? i + 1 : i;
    *frac = src - (float)i;
    if (*hi == *lo)
        *frac = 0;
}

void data_batch(float *out, unsigned char *labels, const struct dataset *ds, const long *idx,
                int B, int side, float mean, float std, const unsigned char *flip)
{
    OFFNAS_ASSERT(side > 0 && std > 0);
    const int C = ds->channels, H = ds->height, W = ds->width;
    const size_t image_bytes = (size_t)C * H * W, out_image = (size_t)side * side * C;
    /* (x / 255 - mean) / std as one multiply-add. */
    const float gain = 1.0f / (255.0f * std), offset = -mean / std;
    const int resize = side != H || side != W;
    for (int b = 0; b < B; b++) {
        OFFNAS_ASSERT(idx[b] >= 0 && idx[b] < ds->count);
        const unsigned char *src = ds->images + (size_t)idx[b] * image_bytes; // (H, W, C)
        float *dst = out + (size_t)b * out_image;                            // (side, side, C)
        const int mirrored = flip && flip[b];
        if (labels)
            labels[b] = ds->labels[idx[b]];
        for (int y = 0; y < side; y++) {
            int y0 = y, y1 = y;
            float fy = 0;
            if (resize)
                bilinear_source(y, H, side, &y0, &y1, &fy);
            for (int x = 0; x < side; x++) {
                int x0 = x, x1 = x;
                float fx = 0;
                if (resize)
                    bilinear_source(x, W, side, &x0, &x1, &fx);
                float *o = dst + ((size_t)y * side + (mirrored ? side - 1 - x : x)) * C;
                for (int c = 0; c < C; c++) {
                    float v;
                    if (!resize) {
                        v = src[((size_t)y * W + x) * C + c];
                    } else {
                        float v00 = src[((size_t)y0 * W + x0) * C + c];
                        float v01 = src[((size_t)y0 * W + x1) * C + c];
                        float v10 = src[((size_t)y1 * W + x0) * C + c];
                        float v11 = src[((size_t)y1 * W + x1) * C + c];
                        v = (1 - fy) * ((1 - fx) * v00 + fx * v01) +
                            fy * ((1 - fx) * v10 + fx * v11);
                    }
                    o[c] = v * gain + offset;
                }
            }
        }
    }
}
