/* h5: the small layer over HDF5 that every offnas file reader and writer uses (data sets, model
 * weights, profiles, checkpoints). Each helper checks every HDF5 call and reports failure
 * through offnas_error() with the file and the object named ("data/x.h5: /train/images:
 * expected rank 4, found 3"); HDF5's own error-stack printing is switched off.
 *
 * Files are written to "<path>.tmp.<pid>" and renamed over <path> only once complete and
 * synced, so a crash or an error never leaves a half-written file where a good one was:
 *
 *     char tmp[H5_PATH_MAX];
 *     hid_t f = h5_create_tmp("run/ckpt.h5", tmp, sizeof tmp);
 *     if (f < 0) return -1;
 *     hsize_t dims[2] = {rows, cols};
 *     if (h5_write(f, "weights/stem", H5_F32, 2, dims, w, 0) ||
 *         h5_attr_set_int(f, "step", step)) {
 *         h5_abort(f, tmp);
 *         return -1;
 *     }
 *     return h5_commit(f, tmp, "run/ckpt.h5");
 *
 * Ids returned by these functions belong to the caller, who closes them with h5_close().
 * Note: the Open MPI flavour of hdf5.h includes mpi.h, so include this header only from .c
 * files, never from another module's public header.
 */
#ifndef OFFNAS_H5_H
#define OFFNAS_H5_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#define H5_PATH_MAX 4096 /* enough for h5_create_tmp's tmp_out */
#define H5_MAX_RANK 8

/* Element types of the data sets offnas stores (little-endian in the file). */
enum h5_type { H5_U8, H5_I32, H5_I64, H5_F32, H5_F64, H5_TYPE_COUNT };

/* Name ("uint8", "float32", ...) and size in bytes of an element type. */
const char *h5_type_name(enum h5_type type);
size_t h5_type_size(enum h5_type type);

/* ---- files ---------------------------------------------------------------------------- */

/* Creates (truncating) the temporary file "<path>.tmp.<pid>" for writing and copies its name
 * into tmp_out (tmp_size bytes, H5_PATH_MAX is always enough). Returns the file id, to be
 * finished with h5_commit() or h5_abort(); or -1 with an error naming the file. */
hid_t h5_create_tmp(const char *path, char *tmp_out, size_t tmp_size);

/* Finishes a file from h5_create_tmp(): flushes and closes it (closing any object still open
 * in it), fsyncs it, renames tmp over path and fsyncs the directory. Consumes file in every
 * case. Returns 0, or -1 with an error after removing tmp (an existing path is untouched). */
int h5_commit(hid_t file, const char *tmp, const char *path);

/* Abandons a file from h5_create_tmp(): closes it (if file >= 0) and removes tmp. Keeps the
 * recorded error message, so it can be called on an error path. */
void h5_abort(hid_t file, const char *tmp);

/* Opens an existing HDF5 file read-only. Returns the file id, or -1 with an error saying the
 * file is missing, unreadable or not an HDF5 file. */
hid_t h5_open_read(const char *path);

/* Closes any id these functions return (file, group, data set); ignores ids < 0. Closing a
 * file also closes every object still open in it. */
void h5_close(hid_t id);

/* ---- groups and existence ------------------------------------------------------------- */

/* Opens the group at path below loc (a file or group id; "a/b" or "/a/b"), creating it and any
 * missing intermediate groups. Returns a group id the caller closes, or -1 with an error. */
hid_t h5_group(hid_t loc, const char *path);

/* Whether the object at path below loc exists (each component of "a/b/c" is checked, so a
 * missing "a" is simply 0). Returns 1, 0, or -1 with an error. */
int h5_exists(hid_t loc, const char *path);

/* ---- data sets ------------------------------------------------------------------------ */

/* Writes a whole new data set at name below loc (intermediate groups are created) with element
 * type type, rank dimensions dims (rank 0: a scalar) and the data, which the caller keeps.
 * gzip_level 1..9 stores it chunked (about 1 MiB chunks along the first dimension), shuffled
 * and deflated; 0 stores it contiguous. Returns 0, or -1 with an error (also if it exists). */
int h5_write(hid_t loc, const char *name, enum h5_type type, int rank, const hsize_t *dims,
             const void *data, int gzip_level);

/* Checks that the data set name below loc has element type type and rank rank, and stores its
 * dimensions in dims_out (rank entries). Returns 0, or -1 with an error naming the file and
 * the data set (missing, not a data set, wrong type, wrong rank). */
int h5_shape(hid_t loc, const char *name, enum h5_type type, int rank, hsize_t *dims_out);

/* Reads the whole data set name (checked as in h5_shape) into a new buffer the caller frees;
 * its dimensions go to dims_out (rank entries). Returns the buffer (non-NULL even when empty),
 * or NULL with an error. */
void *h5_read(hid_t loc, const char *name, enum h5_type type, int rank, hsize_t *dims_out);

/* Reads entries [start, start + count) of the first dimension of data set name (checked as in
 * h5_shape) into buf, which the caller provides with room for count * (product of the other
 * dimensions) elements. Returns 0, or -1 with an error (also if the range is out of bounds). */
int h5_read_rows(hid_t loc, const char *name, enum h5_type type, int rank, hsize_t start,
                 hsize_t count, void *buf);

/* ---- attributes (scalar, on the object loc: a file id means the root group) --------------- */

/* Set the attribute name of loc to a string / a 64-bit integer / a double, replacing an
 * existing one. The value is copied. Return 0, or -1 with an error. */
int h5_attr_set_string(hid_t loc, const char *name, const char *value);
int h5_attr_set_int(hid_t loc, const char *name, int64_t value);
int h5_attr_set_double(hid_t loc, const char *name, double value);

/* Read the scalar attribute name of loc. get_string returns a new NUL-terminated string the
 * caller frees (fixed or variable length in the file), or NULL with an error; get_int accepts
 * any integer type, get_double any integer or float type; both return 0, or -1 with an error
 * (missing attribute, wrong type, not a scalar). */
char *h5_attr_get_string(hid_t loc, const char *name);
int h5_attr_get_int(hid_t loc, const char *name, int64_t *value);
int h5_attr_get_double(hid_t loc, const char *name, double *value);

/* Whether loc has an attribute called name. Returns 1, 0, or -1 with an error. */
int h5_attr_exists(hid_t loc, const char *name);

#endif
