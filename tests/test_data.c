/* Tests of the data module and the h5 helpers: idx reading and its errors, import round trip,
 * loading (hyperslabs, layouts, refusals), the validation split and batches. Every test works
 * in its own directory below a temporary directory removed at exit. */
#define _XOPEN_SOURCE 700
#include "common.h"
#include "data.h"
#include "h5.h"
#include "fixture.h"
#include "testing.h"

#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IMAGES_MAGIC 0x00000803u
#define LABELS_MAGIC 0x00000801u

/* ---- helpers -------------------------------------------------------------------------- */

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes raw bytes to path, gzip'd when gz. */
static void write_bytes(const char *path, int gz, const unsigned char *bytes, size_t len)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        CU_ASSERT_FATAL(f != NULL);
        CU_ASSERT_FATAL(len == 0 || gzwrite(f, bytes, (unsigned)len) == (int)len);
        CU_ASSERT_FATAL(gzclose(f) == Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        CU_ASSERT_FATAL(f != NULL);
        CU_ASSERT_FATAL(fwrite(bytes, 1, len, f) == len);
        CU_ASSERT_FATAL(fclose(f) == 0);
    }
}

/* Writes an idx file: the header announces count items (rows x cols for images) and
 * payload_len bytes follow, so a test can make the header and the data disagree. */
static void write_idx(const char *path, int gz, uint32_t magic, uint32_t count, uint32_t rows,
                      uint32_t cols, const unsigned char *payload, size_t payload_len)
{
    size_t header = magic == IMAGES_MAGIC ? 16 : 8;
    unsigned char *bytes = malloc(header + payload_len);
    CU_ASSERT_FATAL(bytes != NULL);
    put_be32(bytes, magic);
    put_be32(bytes + 4, count);
    if (magic == IMAGES_MAGIC) {
        put_be32(bytes + 8, rows);
        put_be32(bytes + 12, cols);
    }
    if (payload_len)
        memcpy(bytes + header, payload, payload_len);
    write_bytes(path, gz, bytes, header + payload_len);
    free(bytes);
}

static unsigned char pixel(long image, long p) { return (unsigned char)(image * 31 + p * 7 + 3); }

/* Writes a small Fashion-MNIST-like set into dir: train images gzip'd, labels plain (found by
 * the importer without the .gz), test both gzip'd. Images are rows x cols. */
static void write_fashion_dir(const char *dir, long train, long test, int rows, int cols)
{
    const char *prefixes[2] = {"train", "t10k"};
    long counts[2] = {train, test};
    char path[512];
    for (int s = 0; s < 2; s++) {
        long n = counts[s];
        size_t image = (size_t)rows * cols;
        unsigned char *images = malloc((size_t)n * image), *labels = malloc((size_t)n);
        for (long i = 0; i < n; i++) {
            for (size_t p = 0; p < image; p++)
                images[(size_t)i * image + p] = pixel(i + 1000 * s, (long)p);
            labels[i] = (unsigned char)((i * 7 + s) % 10);
        }
        snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, prefixes[s]);
        write_idx(path, 1, IMAGES_MAGIC, (uint32_t)n, (uint32_t)rows, (uint32_t)cols, images,
                  (size_t)n * image);
        if (s == 0)
            snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefixes[s]);
        else
            snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, prefixes[s]);
        write_idx(path, s == 1, LABELS_MAGIC, (uint32_t)n, 0, 0, labels, (size_t)n);
        free(images);
        free(labels);
    }
}

/* Reads a whole small file into buf; returns its length or -1. */
static long read_file(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, size, f);
    fclose(f);
    return (long)n;
}

/* Counts entries of dir whose name contains ".tmp." (left-over temporary files). */
static int count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    CU_ASSERT_FATAL(d != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

/* Writes an HDF5 data file by hand: split/images with the given type, rank and dims (filled
 * with pixel()), split/labels (unless labels_count < 0) filled with label, classes attribute. */
static void write_h5_data(const char *path, const char *split, enum h5_type images_type,
                          int rank, const hsize_t *dims, long labels_count, unsigned char label)
{
    char tmp[H5_PATH_MAX], name[64];
    hid_t file = h5_create_tmp(path, tmp, sizeof tmp);
    CU_ASSERT_FATAL(file >= 0);
    size_t total = 1;
    for (int i = 0; i < rank; i++)
        total *= dims[i];
    unsigned char *bytes = calloc(total * h5_type_size(images_type) + 1, 1);
    for (size_t i = 0; i < total; i++)
        bytes[i * h5_type_size(images_type)] = pixel(0, (long)i);
    snprintf(name, sizeof name, "%s/images", split);
    CU_ASSERT_FATAL(h5_write(file, name, images_type, rank, dims, bytes, 1) == 0);
    free(bytes);
    if (labels_count >= 0) {
        unsigned char *labels = malloc((size_t)labels_count + 1);
        memset(labels, label, (size_t)labels_count + 1);
        hsize_t label_dims[1] = {(hsize_t)labels_count};
        snprintf(name, sizeof name, "%s/labels", split);
        CU_ASSERT_FATAL(h5_write(file, name, H5_U8, 1, label_dims, labels, 0) == 0);
        free(labels);
    }
    CU_ASSERT_FATAL(h5_attr_set_int(file, "classes", 10) == 0);
    CU_ASSERT_FATAL(h5_commit(file, tmp, path) == 0);
}

/* Expects data_load of split to fail with a message containing part1 and part2. */
static void expect_load_error(const char *path, const char *split, const char *part1,
                              const char *part2)
{
    struct dataset ds;
    offnas_error("%s", "");
    EXPECT_EQ_INT(data_load(&ds, path, split, 0, 0), -1);
    EXPECT_CONTAINS(offnas_last_error(), part1);
    EXPECT_CONTAINS(offnas_last_error(), part2);
    CU_ASSERT_PTR_NULL(ds.images);
    CU_ASSERT_PTR_NULL(ds.labels);
}

/* Expects data_read_idx of path to fail with a message naming path and containing part. */
static void expect_idx_error(const char *path, uint32_t magic, const char *part)
{
    long count = -1;
    int rows = -1, cols = -1;
    offnas_error("%s", "");
    CU_ASSERT_PTR_NULL(data_read_idx(path, magic, &count, &rows, &cols));
    EXPECT_CONTAINS(offnas_last_error(), path);
    EXPECT_CONTAINS(offnas_last_error(), part);
}

/* A dataset of n images of 1x1x2 whose pixels spell the image's index (low, high byte). */
static void make_indexed(struct dataset *ds, long n)
{
    ds->count = n;
    ds->channels = 2;
    ds->height = ds->width = 1;
    ds->classes = 10;
    ds->images = malloc((size_t)n * 2);
    ds->labels = malloc((size_t)n);
    for (long i = 0; i < n; i++) {
        ds->images[2 * i] = (unsigned char)(i & 255);
        ds->images[2 * i + 1] = (unsigned char)(i >> 8);
        ds->labels[i] = (unsigned char)(i % 10);
    }
}

static long image_index(const struct dataset *ds, long k)
{
    return ds->images[2 * k] | (long)ds->images[2 * k + 1] << 8;
}

/* ---- idx files ------------------------------------------------------------------------ */

TEST(idx_reads_gzip_and_plain)
{
    const char *dir = temp_dir("idx_reads_gzip_and_plain");
    unsigned char payload[3 * 4 * 5];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (unsigned char)(i * 13);
    char gz_path[512], plain_path[512];
    snprintf(gz_path, sizeof gz_path, "%s/a.gz", dir);
    snprintf(plain_path, sizeof plain_path, "%s/a", dir);
    write_idx(gz_path, 1, IMAGES_MAGIC, 3, 4, 5, payload, sizeof payload);
    write_idx(plain_path, 0, IMAGES_MAGIC, 3, 4, 5, payload, sizeof payload);
    const char *paths[2] = {gz_path, plain_path};
    for (int k = 0; k < 2; k++) {
        long count = 0;
        int rows = 0, cols = 0;
        unsigned char *data = data_read_idx(paths[k], IMAGES_MAGIC, &count, &rows, &cols);
        CU_ASSERT_PTR_NOT_NULL_FATAL(data);
        EXPECT_EQ_INT(count, 3);
        EXPECT_EQ_INT(rows, 4);
        EXPECT_EQ_INT(cols, 5);
        CU_ASSERT(memcmp(data, payload, sizeof payload) == 0);
        free(data);
    }
    unsigned char labels[4] = {0, 9, 3, 255};
    write_idx(plain_path, 0, LABELS_MAGIC, 4, 0, 0, labels, 4);
    long count = 0;
    int rows = 0, cols = 0;
    unsigned char *data = data_read_idx(plain_path, LABELS_MAGIC, &count, &rows, &cols);
    CU_ASSERT_PTR_NOT_NULL_FATAL(data);
    EXPECT_EQ_INT(count, 4);
    EXPECT_EQ_INT(rows, 1);
    EXPECT_EQ_INT(cols, 1);
    CU_ASSERT(memcmp(data, labels, 4) == 0);
    free(data);
}

TEST(idx_refuses_truncated_gzip)
{
    const char *dir = temp_dir("idx_refuses_truncated_gzip");
    char path[512], full_path[512], buf[1 << 16];
    snprintf(full_path, sizeof full_path, "%s/full.gz", dir);
    snprintf(path, sizeof path, "%s/cut.gz", dir);
    unsigned char payload[10 * 28 * 28];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = pixel((long)i / 784, (long)(i * i % 997));
    write_idx(full_path, 1, IMAGES_MAGIC, 10, 28, 28, payload, sizeof payload);
    long len = read_file(full_path, buf, sizeof buf);
    CU_ASSERT_FATAL(len > 100);
    write_bytes(path, 0, (const unsigned char *)buf, (size_t)len / 2);
    expect_idx_error(path, IMAGES_MAGIC, "truncated");
}

TEST(idx_refuses_truncated_header)
{
    const char *dir = temp_dir("idx_refuses_truncated_header");
    char path[512];
    snprintf(path, sizeof path, "%s/short", dir);
    const unsigned char bytes[10] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0};
    write_bytes(path, 0, bytes, sizeof bytes);
    expect_idx_error(path, IMAGES_MAGIC, "truncated");
    write_bytes(path, 1, bytes, 0);
    expect_idx_error(path, LABELS_MAGIC, "truncated");
}

TEST(idx_refuses_wrong_magic)
{
    const char *dir = temp_dir("idx_refuses_wrong_magic");
    char path[512];
    snprintf(path, sizeof path, "%s/labels.gz", dir);
    unsigned char labels[3] = {1, 2, 3};
    write_idx(path, 1, LABELS_MAGIC, 3, 0, 0, labels, 3);
    expect_idx_error(path, IMAGES_MAGIC, "wrong magic 0x00000801");
    snprintf(path, sizeof path, "%s/text", dir);
    write_bytes(path, 0, (const unsigned char *)"hello, world\n", 13);
    expect_idx_error(path, LABELS_MAGIC, "wrong magic");
}

TEST(idx_refuses_count_bigger_than_data)
{
    const char *dir = temp_dir("idx_refuses_count_bigger_than_data");
    char path[512];
    snprintf(path, sizeof path, "%s/images.gz", dir);
    unsigned char payload[4 * 2 * 3] = {0};
    write_idx(path, 1, IMAGES_MAGIC, 5, 2, 3, payload, sizeof payload);
    expect_idx_error(path, IMAGES_MAGIC, "truncated");
    EXPECT_CONTAINS(offnas_last_error(), "5 images");
    /* A header announcing billions of images must fail cleanly, not try to allocate them. */
    write_idx(path, 0, IMAGES_MAGIC, 4000000000u, 1000, 1000, payload, sizeof payload);
    expect_idx_error(path, IMAGES_MAGIC, "truncated");
}

TEST(idx_refuses_count_smaller_than_data)
{
    const char *dir = temp_dir("idx_refuses_count_smaller_than_data");
    char path[512];
    snprintf(path, sizeof path, "%s/labels", dir);
    unsigned char labels[5] = {1, 2, 3, 4, 5};
    write_idx(path, 0, LABELS_MAGIC, 3, 0, 0, labels, sizeof labels);
    expect_idx_error(path, LABELS_MAGIC, "size mismatch");
    EXPECT_CONTAINS(offnas_last_error(), "2 more bytes");
    snprintf(path, sizeof path, "%s/images.gz", dir);
    unsigned char payload[3 * 2 * 2] = {0};
    write_idx(path, 1, IMAGES_MAGIC, 2, 2, 2, payload, sizeof payload);
    expect_idx_error(path, IMAGES_MAGIC, "size mismatch");
}

TEST(idx_refuses_missing_file)
{
    const char *dir = temp_dir("idx_refuses_missing_file");
    char path[512];
    snprintf(path, sizeof path, "%s/nothing.gz", dir);
    expect_idx_error(path, IMAGES_MAGIC, "cannot open");
}

/* ---- import --------------------------------------------------------------------------- */

TEST(import_round_trip)
{
    const char *dir = temp_dir("import_round_trip");
    char out[512];
    snprintf(out, sizeof out, "%s/data.h5", dir);
    const int rows = 7, cols = 6;
    write_fashion_dir(dir, 23, 9, rows, cols);
    CU_ASSERT_FATAL(data_import_idx(dir, out) == 0);
    EXPECT_EQ_INT(count_tmp_files(dir), 0);

    const char *splits[2] = {"train", "test"};
    long counts[2] = {23, 9};
    for (int s = 0; s < 2; s++) {
        struct dataset ds;
        CU_ASSERT_FATAL(data_load(&ds, out, splits[s], 0, 0) == 0);
        EXPECT_EQ_INT(ds.count, counts[s]);
        EXPECT_EQ_INT(ds.channels, 1);
        EXPECT_EQ_INT(ds.height, rows);
        EXPECT_EQ_INT(ds.width, cols);
        EXPECT_EQ_INT(ds.classes, 10);
        int same = 1;
        for (long i = 0; i < ds.count; i++) {
            same &= ds.labels[i] == (i * 7 + s) % 10;
            for (long p = 0; p < rows * cols; p++)
                same &= ds.images[i * rows * cols + p] == pixel(i + 1000 * s, p);
        }
        CU_ASSERT(same);
        data_free(&ds);
        CU_ASSERT_PTR_NULL(ds.images);
    }

    hid_t file = h5_open_read(out);
    CU_ASSERT_FATAL(file >= 0);
    hsize_t dims[4];
    CU_ASSERT(h5_shape(file, "/train/images", H5_U8, 4, dims) == 0);
    EXPECT_EQ_INT(dims[0], 23);
    EXPECT_EQ_INT(dims[1], 1);
    EXPECT_EQ_INT(dims[2], rows);
    EXPECT_EQ_INT(dims[3], cols);
    int64_t classes = 0;
    CU_ASSERT(h5_attr_get_int(file, "classes", &classes) == 0);
    EXPECT_EQ_INT(classes, 10);
    char *names = h5_attr_get_string(file, "class_names");
    CU_ASSERT_STRING_EQUAL(names ? names : "",
                           "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,"
                           "Ankle boot");
    free(names);
    char *source = h5_attr_get_string(file, "source");
    EXPECT_CONTAINS(source, dir);
    free(source);
    h5_close(file);
}

/* Expects importing dir into out to fail with a message naming path and containing part. */
static void expect_import_error(const char *dir, const char *out, const char *path,
                                const char *part)
{
    offnas_error("%s", "");
    EXPECT_EQ_INT(data_import_idx(dir, out), -1);
    EXPECT_CONTAINS(offnas_last_error(), path);
    EXPECT_CONTAINS(offnas_last_error(), part);
}

TEST(import_refuses_count_mismatch)
{
    const char *dir = temp_dir("import_refuses_count_mismatch");
    const char *out = path_in(dir, "data.h5");
    write_fashion_dir(dir, 12, 5, 4, 4);
    unsigned char labels[11] = {0};
    const char *path = path_in(dir, "train-labels-idx1-ubyte");
    write_idx(path, 0, LABELS_MAGIC, 11, 0, 0, labels, sizeof labels);
    expect_import_error(dir, out, path, "11 labels");
    CU_ASSERT(access(out, F_OK) != 0);
    EXPECT_EQ_INT(count_tmp_files(dir), 0);
}

TEST(import_refuses_label_out_of_range)
{
    const char *dir = temp_dir("import_refuses_label_out_of_range");
    write_fashion_dir(dir, 12, 5, 4, 4);
    unsigned char labels[5] = {0, 1, 10, 2, 3};
    const char *path = path_in(dir, "t10k-labels-idx1-ubyte.gz");
    write_idx(path, 1, LABELS_MAGIC, 5, 0, 0, labels, sizeof labels);
    expect_import_error(dir, path_in(dir, "data.h5"), path, "label 2 is 10");
}

TEST(import_failure_keeps_existing_file)
{
    const char *dir = temp_dir("import_failure_keeps_existing_file");
    char out[512], path[512], buf[64];
    snprintf(out, sizeof out, "%s/data.h5", dir);
    write_bytes(out, 0, (const unsigned char *)"precious\n", 9);
    write_fashion_dir(dir, 12, 5, 4, 4);
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", dir);
    unsigned char payload[4 * 4 * 4] = {0};
    write_idx(path, 1, IMAGES_MAGIC, 5, 4, 4, payload, sizeof payload); /* one image short */
    EXPECT_EQ_INT(data_import_idx(dir, out), -1);
    EXPECT_CONTAINS(offnas_last_error(), path);
    long len = read_file(out, buf, sizeof buf);
    EXPECT_EQ_INT(len, 9);
    CU_ASSERT(len == 9 && memcmp(buf, "precious\n", 9) == 0);
    EXPECT_EQ_INT(count_tmp_files(dir), 0);

    /* A writer failing after it created its temporary file leaves the old file too. */
    char tmp[H5_PATH_MAX];
    hid_t file = h5_create_tmp(out, tmp, sizeof tmp);
    CU_ASSERT_FATAL(file >= 0);
    EXPECT_EQ_INT(count_tmp_files(dir), 1);
    hsize_t dims[1] = {3};
    CU_ASSERT(h5_write(file, "x", H5_U8, 1, dims, "abc", 0) == 0);
    CU_ASSERT(h5_write(file, "x", H5_U8, 1, dims, "abc", 0) == -1); /* exists */
    EXPECT_CONTAINS(offnas_last_error(), "data.h5: /x: already exists");
    h5_abort(file, tmp);
    EXPECT_CONTAINS(offnas_last_error(), "already exists"); /* abort keeps the message */
    len = read_file(out, buf, sizeof buf);
    CU_ASSERT(len == 9 && memcmp(buf, "precious\n", 9) == 0);
    EXPECT_EQ_INT(count_tmp_files(dir), 0);

    /* And a successful import replaces it. */
    write_fashion_dir(dir, 12, 5, 4, 4);
    CU_ASSERT(data_import_idx(dir, out) == 0);
    struct dataset ds;
    CU_ASSERT_FATAL(data_load(&ds, out, "test", 0, 0) == 0);
    EXPECT_EQ_INT(ds.count, 5);
    data_free(&ds);
}

/* ---- loading -------------------------------------------------------------------------- */

/* Data files of the wrong layout are refused with a message naming the file and the data set
 * (or the counts that disagree), and nothing is loaded. */
TEST(load_refuses_bad_layouts)
{
    static const struct {
        const char *file, *written; /* the split the file holds */
        enum h5_type type;
        int rank;
        hsize_t dims[4];
        long labels; /* count (-1: no labels) */
        unsigned char label;
        const char *loaded, *part1, *part2; /* part1 NULL: the file's path */
    } cases[] = {
        {"nolabels.h5", "test", H5_U8, 4, {4, 1, 3, 3}, -1, 0, "test", NULL, "/test/labels"},
        {"nolabels.h5", "test", H5_U8, 4, {4, 1, 3, 3}, -1, 0, "train", NULL,
         "/train/images: missing"},
        {"rank3.h5", "train", H5_U8, 3, {4, 3, 3}, 4, 0, "train", NULL,
         "/train/images: expected rank 4, found 3"},
        {"int32.h5", "train", H5_I32, 4, {4, 1, 3, 3}, 4, 0, "train", NULL,
         "/train/images: expected uint8, found int32"},
        {"big.h5", "train", H5_U8, 4, {4, 1, 3, 3}, 4, 10, "train", NULL, "/train/labels[0] is 10"},
        {"fewer.h5", "train", H5_U8, 4, {4, 1, 3, 3}, 3, 1, "train", "4 images", "3 labels"},
    };
    const char *dir = temp_dir("load_refuses_bad_layouts");
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(cases); i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].file);
        write_h5_data(path, cases[i].written, cases[i].type, cases[i].rank, cases[i].dims,
                      cases[i].labels, cases[i].label);
        expect_load_error(path, cases[i].loaded, cases[i].part1 ? cases[i].part1 : path,
                          cases[i].part2);
    }
}

TEST(load_refuses_missing_or_foreign_file)
{
    const char *dir = temp_dir("load_refuses_missing_or_foreign_file");
    char path[512];
    snprintf(path, sizeof path, "%s/absent.h5", dir);
    expect_load_error(path, "train", path, "No such file");
    snprintf(path, sizeof path, "%s/text.h5", dir);
    write_bytes(path, 0, (const unsigned char *)"not hdf5 at all\n", 16);
    expect_load_error(path, "train", path, "not an HDF5 file");
}

TEST(load_hyperslab_matches_full_load)
{
    const char *dir = temp_dir("load_hyperslab_matches_full_load");
    char out[512];
    snprintf(out, sizeof out, "%s/data.h5", dir);
    write_fashion_dir(dir, 40, 6, 5, 5);
    CU_ASSERT_FATAL(data_import_idx(dir, out) == 0);
    struct dataset full, part, tail;
    CU_ASSERT_FATAL(data_load(&full, out, "train", 0, 0) == 0);
    CU_ASSERT_FATAL(data_load(&part, out, "train", 13, 17) == 0);
    EXPECT_EQ_INT(part.count, 17);
    CU_ASSERT(memcmp(part.images, full.images + 13 * 25, 17 * 25) == 0);
    CU_ASSERT(memcmp(part.labels, full.labels + 13, 17) == 0);
    CU_ASSERT_FATAL(data_load(&tail, out, "train", 31, 0) == 0); /* count 0: to the end */
    EXPECT_EQ_INT(tail.count, 9);
    CU_ASSERT(memcmp(tail.images, full.images + 31 * 25, 9 * 25) == 0);
    data_free(&full);
    data_free(&part);
    data_free(&tail);
    offnas_error("%s", "");
    EXPECT_EQ_INT(data_load(&part, out, "train", 30, 11), -1);
    EXPECT_CONTAINS(offnas_last_error(), "images [30, 41) outside its 40 images");
    EXPECT_EQ_INT(data_load(&part, out, "train", 41, 0), -1);
    EXPECT_CONTAINS(offnas_last_error(), "start 41");
}

TEST(load_converts_channels_first_to_last)
{
    const char *dir = temp_dir("load_converts_channels_first_to_last");
    char path[512];
    snprintf(path, sizeof path, "%s/rgb.h5", dir);
    hsize_t dims[4] = {3, 3, 2, 4}; /* N, C, H, W */
    write_h5_data(path, "train", H5_U8, 4, dims, 3, 2);
    struct dataset ds;
    CU_ASSERT_FATAL(data_load(&ds, path, "train", 1, 2) == 0);
    EXPECT_EQ_INT(ds.channels, 3);
    EXPECT_EQ_INT(ds.height, 2);
    EXPECT_EQ_INT(ds.width, 4);
    int same = 1;
    for (long n = 0; n < 2; n++)
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 4; x++)
                for (int c = 0; c < 3; c++) {
                    long file_index = (((n + 1) * 3 + c) * 2 + y) * 4 + x; /* NCHW, from 1 */
                    same &= ds.images[((n * 2 + y) * 4 + x) * 3 + c] == pixel(0, file_index);
                }
    CU_ASSERT(same);
    data_free(&ds);
}

/* ---- validation split ----------------------------------------------------------------- */

TEST(split_is_deterministic_disjoint_and_covering)
{
    struct dataset full = {0}, train, val, train2, val2, train3, val3;
    make_indexed(&full, 300);
    CU_ASSERT_FATAL(data_split_validation(&full, 70, 42, &train, &val) == 0);
    CU_ASSERT_FATAL(data_split_validation(&full, 70, 42, &train2, &val2) == 0);
    CU_ASSERT_FATAL(data_split_validation(&full, 70, 43, &train3, &val3) == 0);
    EXPECT_EQ_INT(train.count, 230);
    EXPECT_EQ_INT(val.count, 70);
    EXPECT_EQ_INT(train.channels, 2);
    CU_ASSERT(memcmp(val.images, val2.images, 140) == 0);
    CU_ASSERT(memcmp(train.images, train2.images, 460) == 0);
    CU_ASSERT(memcmp(val.images, val3.images, 140) != 0);

    int seen[300] = {0}, ordered = 1, labels_follow = 1;
    for (long k = 0; k < train.count; k++) {
        long i = image_index(&train, k);
        seen[i]++;
        ordered &= k == 0 || i > image_index(&train, k - 1);
        labels_follow &= train.labels[k] == i % 10;
    }
    for (long k = 0; k < val.count; k++) {
        long i = image_index(&val, k);
        seen[i]++;
        labels_follow &= val.labels[k] == i % 10;
    }
    int once = 1;
    for (int i = 0; i < 300; i++)
        once &= seen[i] == 1;
    CU_ASSERT(once);          /* disjoint and covering */
    CU_ASSERT(ordered);       /* training images keep their order */
    CU_ASSERT(labels_follow); /* labels move with their images */

    data_free(&train2);
    data_free(&val2);
    CU_ASSERT(data_split_validation(&full, 0, 1, &train2, &val2) == 0);
    EXPECT_EQ_INT(val2.count, 0);
    CU_ASSERT(memcmp(train2.images, full.images, 600) == 0);
    data_free(&train2);
    data_free(&val2);
    EXPECT_EQ_INT(data_split_validation(&full, 300, 1, &train2, &val2), -1);
    EXPECT_EQ_INT(data_split_validation(&full, -1, 1, &train2, &val2), -1);
    EXPECT_CONTAINS(offnas_last_error(), "validation size -1");

    data_free(&full);
    data_free(&train);
    data_free(&val);
    data_free(&train3);
    data_free(&val3);
}

/* ---- batches -------------------------------------------------------------------------- */

/* A one-channel dataset of count images of h x w from bytes. */
static struct dataset gray(unsigned char *bytes, unsigned char *labels, long count, int h, int w)
{
    struct dataset ds = {count, 1, h, w, 10, bytes, labels};
    return ds;
}

TEST(batch_normalises_and_flips)
{
    unsigned char images[2 * 2 * 2] = {0, 51, 153, 255, /* image 0 */
                                       10, 20, 30, 40};  /* image 1 */
    unsigned char labels[2] = {7, 3};
    struct dataset ds = gray(images, labels, 2, 2, 2);
    long idx[3] = {1, 0, 0};
    unsigned char flip[3] = {0, 0, 1};
    float out[3 * 4];
    unsigned char got_labels[3];
    const float mean = 0.5f, std = 0.25f;
    data_batch(out, got_labels, &ds, idx, 3, 2, mean, std, flip);
#define N(v) (((v) / 255.f - mean) / std)
    const float expect[3 * 4] = {
        N(10), N(20), N(30), N(40), /* image 1 */
        -2.0f, N(51), N(153), 2.0f, /* image 0: 0 -> (0 - .5) / .25, 255 -> 2 */
        N(51), -2.0f, 2.0f, N(153), /* image 0 mirrored left-right */
    };
#undef N
    for (int i = 0; i < 12; i++)
        EXPECT_NEAR(out[i], expect[i], 1e-5);
    EXPECT_EQ_INT(got_labels[0], 3);
    EXPECT_EQ_INT(got_labels[1], 7);
    EXPECT_EQ_INT(got_labels[2], 7);

    /* flip and labels may be NULL. */
    data_batch(out, NULL, &ds, idx, 1, 2, 0.2860f, 0.3530f, NULL);
    EXPECT_NEAR(out[0], (10 / 255.f - 0.2860f) / 0.3530f, 1e-5);
    EXPECT_NEAR(out[3], (40 / 255.f - 0.2860f) / 0.3530f, 1e-5);
}

TEST(batch_flips_channels_last)
{
    /* A 1x2 image with 3 channels, resized to 2x2 (rows are copies, columns unchanged) and
     * mirrored: flipping swaps pixels, never channels. */
    unsigned char image[6] = {0, 51, 102, 153, 204, 255};
    unsigned char label = 1;
    struct dataset ds = {1, 3, 1, 2, 10, image, &label};
    long idx[1] = {0};
    unsigned char flip[1] = {1};
    float out[2 * 2 * 3];
    data_batch(out, NULL, &ds, idx, 1, 2, 0.0f, 1.0f, flip);
    const float expect[6] = {153, 204, 255, 0, 51, 102};
    for (int y = 0; y < 2; y++)
        for (int i = 0; i < 6; i++)
            EXPECT_NEAR(out[y * 6 + i] * 255.0f, expect[i], 1e-3);
}

TEST(batch_bilinear_keeps_constant_image)
{
    unsigned char image[5 * 5], label = 4;
    memset(image, 77, sizeof image);
    struct dataset ds = gray(image, &label, 1, 5, 5);
    long idx[1] = {0};
    float out[13 * 13];
    data_batch(out, NULL, &ds, idx, 1, 13, 0.1f, 0.5f, NULL);
    int constant = 1;
    for (int i = 0; i < 13 * 13; i++)
        constant &= fabsf(out[i] - (77 / 255.f - 0.1f) / 0.5f) < 1e-5f;
    CU_ASSERT(constant);
    float small[3 * 3];
    data_batch(small, NULL, &ds, idx, 1, 3, 0.1f, 0.5f, NULL); /* downsampling too */
    for (int i = 0; i < 9; i++)
        EXPECT_NEAR(small[i], (77 / 255.f - 0.1f) / 0.5f, 1e-5);
}

TEST(batch_bilinear_matches_hand_computed_values)
{
    /* [[0, 100], [200, 40]] to 4x4, align_corners = false: output pixel x samples source
     * (x + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to pixel 1), so
     * the weights of (p0, p1) are (1, 0), (.75, .25), (.25, .75), (0, 1) in both directions.
     * Row 0: 0, 25, 75, 100.  Row 3: 200, 160, 80, 40.  Row 1 = .75 row 0 + .25 row 3,
     * row 2 = .25 row 0 + .75 row 3. (The same numbers as PyTorch's F.interpolate.) */
    unsigned char image[4] = {0, 100, 200, 40}, label = 0;
    struct dataset ds = gray(image, &label, 1, 2, 2);
    long idx[1] = {0};
    float out[16];
    data_batch(out, NULL, &ds, idx, 1, 4, 0.0f, 1.0f, NULL);
    const float expect[16] = {0,   25,     75,    100, /* */
                              50,  58.75f, 76.25f, 85, /* */
                              150, 126.25f, 78.75f, 55, /* */
                              200, 160,    80,    40};
    for (int i = 0; i < 16; i++)
        EXPECT_NEAR(out[i] * 255.0f, expect[i], 1e-3);

    /* 4x4 to 2x2 samples source 0.5 and 2.5: each output is the mean of a 2x2 block. */
    unsigned char big[16] = {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150};
    ds = gray(big, &label, 1, 4, 4);
    float half[4];
    data_batch(half, NULL, &ds, idx, 1, 2, 0.0f, 1.0f, NULL);
    const float expect_half[4] = {25, 45, 105, 125};
    for (int i = 0; i < 4; i++)
        EXPECT_NEAR(half[i] * 255.0f, expect_half[i], 1e-3);
}

/* ---- h5 helpers ----------------------------------------------------------------------- */

TEST(h5_round_trip_and_errors)
{
    const char *dir = temp_dir("h5_round_trip_and_errors"), *path = path_in(dir, "mixed.h5");
    char tmp[H5_PATH_MAX];
    hid_t file = h5_create_tmp(path, tmp, sizeof tmp);
    CU_ASSERT_FATAL(file >= 0);
    hid_t group = h5_group(file, "a/b/c");
    CU_ASSERT_FATAL(group >= 0);
    EXPECT_EQ_INT(h5_exists(file, "a/b"), 1);
    EXPECT_EQ_INT(h5_exists(file, "/a/b/c"), 1);
    EXPECT_EQ_INT(h5_exists(file, "a/x/c"), 0);
    float f32[6] = {1.5f, -2, 3, 4, 5, 6.25f};
    double f64[2] = {1e-300, -7};
    int32_t i32[3] = {-1, 0, 2147483647};
    int64_t i64[2] = {INT64_MIN, 5};
    hsize_t d23[2] = {2, 3}, d2[1] = {2}, d3[1] = {3};
    CU_ASSERT(h5_write(group, "f32", H5_F32, 2, d23, f32, 6) == 0);
    CU_ASSERT(h5_write(file, "x/f64", H5_F64, 1, d2, f64, 0) == 0);
    CU_ASSERT(h5_write(file, "/x/i32", H5_I32, 1, d3, i32, 0) == 0);
    CU_ASSERT(h5_write(file, "i64", H5_I64, 1, d2, i64, 0) == 0);
    CU_ASSERT(h5_write(file, "scalar", H5_F64, 0, NULL, f64 + 1, 0) == 0);
    CU_ASSERT(h5_attr_set_string(group, "note", "hello") == 0);
    CU_ASSERT(h5_attr_set_string(group, "note", "replaced") == 0);
    CU_ASSERT(h5_attr_set_double(file, "lr", 0.125) == 0);
    CU_ASSERT(h5_attr_set_int(file, "step", -42) == 0);
    h5_close(group);
    CU_ASSERT_FATAL(h5_commit(file, tmp, path) == 0);
    EXPECT_EQ_INT(count_tmp_files(dir), 0);

    file = h5_open_read(path);
    CU_ASSERT_FATAL(file >= 0);
    hsize_t dims[2];
    float *rf = h5_read(file, "a/b/c/f32", H5_F32, 2, dims);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rf);
    EXPECT_EQ_INT(dims[0], 2);
    EXPECT_EQ_INT(dims[1], 3);
    CU_ASSERT(memcmp(rf, f32, sizeof f32) == 0);
    free(rf);
    float row[3];
    CU_ASSERT(h5_read_rows(file, "/a/b/c/f32", H5_F32, 2, 1, 1, row) == 0);
    CU_ASSERT(memcmp(row, f32 + 3, sizeof row) == 0);
    double *rd = h5_read(file, "x/f64", H5_F64, 1, dims);
    CU_ASSERT(rd && memcmp(rd, f64, sizeof f64) == 0);
    free(rd);
    int32_t *ri = h5_read(file, "x/i32", H5_I32, 1, dims);
    CU_ASSERT(ri && memcmp(ri, i32, sizeof i32) == 0);
    free(ri);
    int64_t *rl = h5_read(file, "i64", H5_I64, 1, dims);
    CU_ASSERT(rl && memcmp(rl, i64, sizeof i64) == 0);
    free(rl);
    double *scalar = h5_read(file, "scalar", H5_F64, 0, NULL);
    CU_ASSERT(scalar && *scalar == -7);
    free(scalar);

    hid_t c = h5_group(file, "a/b/c"); /* exists: opened, not created (file is read-only) */
    CU_ASSERT_FATAL(c >= 0);
    char *note = h5_attr_get_string(c, "note");
    CU_ASSERT_STRING_EQUAL(note ? note : "", "replaced");
    free(note);
    h5_close(c);
    double lr = 0;
    int64_t step = 0;
    CU_ASSERT(h5_attr_get_double(file, "lr", &lr) == 0 && lr == 0.125);
    CU_ASSERT(h5_attr_get_int(file, "step", &step) == 0 && step == -42);
    CU_ASSERT(h5_attr_get_double(file, "step", &lr) == 0 && lr == -42); /* ints widen */
    EXPECT_EQ_INT(h5_attr_exists(file, "nothing"), 0);

    /* Errors name the file and the object. */
    CU_ASSERT(h5_attr_get_int(file, "lr", &step) == -1);
    EXPECT_CONTAINS(offnas_last_error(), "mixed.h5: /: attribute lr: expected an integer");
    CU_ASSERT(h5_attr_get_string(file, "missing") == NULL);
    EXPECT_CONTAINS(offnas_last_error(), "attribute missing missing");
    CU_ASSERT(h5_read(file, "x/i32", H5_F32, 1, dims) == NULL);
    EXPECT_CONTAINS(offnas_last_error(), "mixed.h5: /x/i32: expected float32, found int32");
    CU_ASSERT(h5_shape(file, "x/f64", H5_F64, 2, dims) == -1);
    EXPECT_CONTAINS(offnas_last_error(), "/x/f64: expected rank 2, found 1");
    CU_ASSERT(h5_shape(file, "a/b", H5_F64, 1, dims) == -1);
    EXPECT_CONTAINS(offnas_last_error(), "/a/b: not a data set");
    CU_ASSERT(h5_read_rows(file, "a/b/c/f32", H5_F32, 2, 1, 2, row) == -1);
    EXPECT_CONTAINS(offnas_last_error(), "rows [1, 3) outside its 2 rows");
    CU_ASSERT(h5_write(file, "new", H5_U8, 1, d2, "ab", 0) == -1); /* read-only */
    EXPECT_CONTAINS(offnas_last_error(), "mixed.h5: /new: cannot create");
    h5_close(file);

    CU_ASSERT(h5_open_read(dir) < 0);
    EXPECT_CONTAINS(offnas_last_error(), "is a directory");
}

TEST(h5_reads_variable_length_strings)
{
    /* h5py and other tools write strings as variable length; h5_attr_get_string reads both. */
    const char *path = path_in(temp_dir("h5_reads_variable_length_strings"), "vlen.h5");
    char tmp[H5_PATH_MAX];
    hid_t file = h5_create_tmp(path, tmp, sizeof tmp);
    CU_ASSERT_FATAL(file >= 0);
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR);
    CU_ASSERT_FATAL(H5Tset_size(type, H5T_VARIABLE) >= 0);
    hid_t attr = H5Acreate2(file, "source", type, space, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(attr >= 0);
    const char *value = "written by h5py";
    CU_ASSERT_FATAL(H5Awrite(attr, type, &value) >= 0);
    H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    CU_ASSERT_FATAL(h5_commit(file, tmp, path) == 0);
    file = h5_open_read(path);
    CU_ASSERT_FATAL(file >= 0);
    char *got = h5_attr_get_string(file, "source");
    CU_ASSERT_STRING_EQUAL(got ? got : "", "written by h5py");
    free(got);
    h5_close(file);
}

static const struct test_case TESTS[] = {
    CASE(idx_reads_gzip_and_plain),
    CASE(idx_refuses_truncated_gzip),
    CASE(idx_refuses_truncated_header),
    CASE(idx_refuses_wrong_magic),
    CASE(idx_refuses_count_bigger_than_data),
    CASE(idx_refuses_count_smaller_than_data),
    CASE(idx_refuses_missing_file),
    CASE(import_round_trip),
    CASE(import_refuses_count_mismatch),
    CASE(import_refuses_label_out_of_range),
    CASE(import_failure_keeps_existing_file),
    CASE(load_refuses_bad_layouts),
    CASE(load_refuses_missing_or_foreign_file),
    CASE(load_hyperslab_matches_full_load),
    CASE(load_converts_channels_first_to_last),
    CASE(split_is_deterministic_disjoint_and_covering),
    CASE(batch_normalises_and_flips),
    CASE(batch_flips_channels_last),
    CASE(batch_bilinear_keeps_constant_image),
    CASE(batch_bilinear_matches_hand_computed_values),
    CASE(h5_round_trip_and_errors),
    CASE(h5_reads_variable_length_strings),
};

TEST_MAIN("data", TESTS)
