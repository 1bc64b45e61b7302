/* fuzz_idx: the idx reader of `offnas data import`. The input is one idx file (gzip'd or
 * plain), read by data_read_idx as images and as labels. An image file that reads is imported
 * by data_import_idx as both splits with generated labels (a label file that reads: with
 * generated 2x2 images), and the data file it writes is loaded back with data_load. */
#include "fuzz_lib.h"

#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDX_IMAGES 0x00000803u
#define IDX_LABELS 0x00000801u
#define IMPORT_MAX_ITEMS 4096 /* larger inputs are read, not imported (time per input) */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An idx file of count labels i % 10 (labels) or count 2x2 black images. */
static void write_generated(const char *name, uint32_t magic, long count)
{
    size_t header = magic == IDX_IMAGES ? 16 : 8, item = magic == IDX_IMAGES ? 4 : 1;
    size_t size = header + (size_t)count * item;
    uint8_t *buf = calloc(1, size);
    if (!buf)
        abort();
    put_be32(buf, magic);
    put_be32(buf + 4, (uint32_t)count);
    if (magic == IDX_IMAGES) {
        put_be32(buf + 8, 2);
        put_be32(buf + 12, 2);
    } else {
        for (long i = 0; i < count; i++)
            buf[header + i] = (uint8_t)(i % 10);
    }
    fuzz_write_file(name, buf, size);
    free(buf);
}

/* Imports images and labels (the input as one of them) as both splits, then loads them. */
static void import(const uint8_t *data, size_t size, int input_is_images, long count)
{
    const char *const names[2][2] = {
        {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
        {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}};
    for (int split = 0; split < 2; split++) {
        fuzz_write_file(names[split][input_is_images ? 0 : 1], data, size);
        if (input_is_images)
            write_generated(names[split][1], IDX_LABELS, count);
        else
            write_generated(names[split][0], IDX_IMAGES, count);
    }
    char out[512];
    snprintf(out, sizeof out, "%s/import.h5", fuzz_dir());
    if (fuzz_step("data_import_idx", data_import_idx(fuzz_dir(), out)) == 0) {
        struct dataset ds = {0};
        if (fuzz_step("data_load", data_load(&ds, out, "train", 0, 0)) == 0 && ds.count != count) {
            fprintf(stderr, "fuzz: imported %ld images, loaded %ld\n", count, ds.count);
            abort();
        }
        data_free(&ds);
    }
    remove(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    const char *path = fuzz_write_file("input-idx", data, size);
    long count = 0;
    int rows = 0, cols = 0;
    unsigned char *images = data_read_idx(path, IDX_IMAGES, &count, &rows, &cols);
    int read = images != NULL;
    fuzz_step("data_read_idx images", !read);
    free(images);
    if (read && count <= IMPORT_MAX_ITEMS)
        import(data, size, 1, count);
    path = fuzz_write_file("input-idx", data, size);
    unsigned char *labels = data_read_idx(path, IDX_LABELS, &count, NULL, NULL);
    read = labels != NULL;
    fuzz_step("data_read_idx labels", !read);
    free(labels);
    if (read && count <= IMPORT_MAX_ITEMS)
        import(data, size, 0, count);
    return 0;
}
