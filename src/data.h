/* data: data sets in HDF5, the Fashion-MNIST idx importer, the validation split and batches.
 *
 * File layout (written by data_import_idx, read by data_load):
 *   /train/images uint8 [N,C,H,W]   /train/labels uint8 [N]
 *   /test/images  uint8 [N,C,H,W]   /test/labels  uint8 [N]
 *   root attributes: classes (int), source (string), class_names (string, comma separated)
 * The validation split is not stored: it is carved from /train by a seeded shuffle at load time
 * (job keys data.val_size, data.seed), so one file serves every split size.
 */
#ifndef OFFNAS_DATA_H
#define OFFNAS_DATA_H

#include <stdint.h>

struct dataset {
    long count;             /* images */
    int channels, height, width;
    int classes;
    unsigned char *images;  /* (count, H, W, C) NHWC, owned */
    unsigned char *labels;  /* (count), owned */
};

/* Reads one gzip'd (or plain) idx file. For images (magic 0x00000803) fills *count, *rows,
 * *cols and returns a malloc'd (count*rows*cols) buffer; for labels (0x00000801) *rows = *cols
 * = 1. expect_magic selects which. Returns NULL with an error naming the file on a wrong magic,
 * a truncated file, a size that does not match the header, or a read error. */
unsigned char *data_read_idx(const char *path, uint32_t expect_magic, long *count, int *rows,
                             int *cols);

/* Imports the four idx files of Fashion-MNIST (train-images-idx3-ubyte.gz, ...) found in dir
 * into an HDF5 file at out_path (written to a temporary file and renamed, so an existing file
 * is never left half-written). Checks that image and label counts agree and labels < 10.
 * Returns 0 or -1 with an error. */
int data_import_idx(const char *dir, const char *out_path);

/* Loads images [start, start+count) of split "train" or "test" from an HDF5 data file with a
 * hyperslab read (count <= 0: to the end). Returns 0 or -1 with an error naming the file and
 * what is wrong (missing data set, wrong type or rank, labels/images mismatch, label >= classes). */
int data_load(struct dataset *ds, const char *path, const char *split, long start, long count);

/* Frees the buffers of ds and zeroes it. */
void data_free(struct dataset *ds);

/* Splits full into train (count - val_size images) and val (val_size images) by a shuffle
 * seeded with seed; both are new copies. Returns 0, or -1 if val_size is not in [0, count). */
int data_split_validation(const struct dataset *full, long val_size, uint64_t seed,
                          struct dataset *train, struct dataset *val);

/* The validation rows of a training set of count images: a malloc'd mask (1 = validation),
 * the same rows data_split_validation picks; NULL with an error if val_size is not in
 * [0, count). Lets a rank load only its shard and still agree on the split. */
unsigned char *data_validation_mask(long count, long val_size, uint64_t seed);

/* Copies the images of in whose mark equals want, in their order, into out (a new copy). */
void data_select(struct dataset *out, const struct dataset *in, const unsigned char *mark,
                 unsigned char want);

/* Number of images of split "train" or "test" of a data file, without reading them. */
int data_rows(const char *path, const char *split, long *count);

/* Fashion-MNIST pixel statistics (the peer's normalisation), what data_batch is given. */
#define DATA_MEAN 0.2860f
#define DATA_STD 0.3530f
/* That normalisation of a pixel p (0..255): p * DATA_GAIN + DATA_OFFSET. */
#define DATA_GAIN (1.0f / (255.0f * DATA_STD))
#define DATA_OFFSET (-DATA_MEAN / DATA_STD)

/* Builds a float batch: out (B, side, side, C) from the images idx[0..B) of ds, scaled to
 * [0,1], normalised with (x - mean)/std (Fashion-MNIST: 0.2860, 0.3530), bilinearly resized
 * to side x side when side != ds->height (align_corners = false), and mirrored left-right
 * where flip is non-NULL and flip[i] != 0. labels (B) receives the labels. */
void data_batch(float *out, unsigned char *labels, const struct dataset *ds, const long *idx,
                int B, int side, float mean, float std, const unsigned char *flip);

#endif
