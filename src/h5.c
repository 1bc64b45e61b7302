/* h5: checked HDF5 helpers; see h5.h. */
#define _POSIX_C_SOURCE 200809L
#include "h5.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

static const char *const TYPE_NAMES[] = {"uint8", "int32", "int64", "float32", "float64"};
static const size_t TYPE_SIZES[] = {1, 4, 8, 4, 8};
_Static_assert(OFFNAS_ARRAY_LEN(TYPE_NAMES) == H5_TYPE_COUNT, "a name for every h5_type");
_Static_assert(OFFNAS_ARRAY_LEN(TYPE_SIZES) == H5_TYPE_COUNT, "a size for every h5_type");

#define WHERE_MAX 1024

const char *h5_type_name(enum h5_type type)
{
    OFFNAS_ASSERT((unsigned)type < H5_TYPE_COUNT);
    return TYPE_NAMES[type];
}

size_t h5_type_size(enum h5_type type)
{
    OFFNAS_ASSERT((unsigned)type < H5_TYPE_COUNT);
    return TYPE_SIZES[type];
}

/* The type stored in files: fixed little-endian, whatever the writing machine. */
static hid_t file_type(enum h5_type type)
{
    switch (type) {
    case H5_U8: return H5T_STD_U8LE;
    case H5_I32: return H5T_STD_I32LE;
    case H5_I64: return H5T_STD_I64LE;
    case H5_F32: return H5T_IEEE_F32LE;
    case H5_F64: return H5T_IEEE_F64LE;
    default: OFFNAS_ASSERT(!"bad h5_type"); return -1;
    }
}

static hid_t memory_type(enum h5_type type)
{
    switch (type) {
    case H5_U8: return H5T_NATIVE_UINT8;
    case H5_I32: return H5T_NATIVE_INT32;
    case H5_I64: return H5T_NATIVE_INT64;
    case H5_F32: return H5T_NATIVE_FLOAT;
    case H5_F64: return H5T_NATIVE_DOUBLE;
    default: OFFNAS_ASSERT(!"bad h5_type"); return -1;
    }
}

/* HDF5 prints its error stack to stderr by default; our messages replace it. */
static void quiet(void)
{
    static int done;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

/* Writes "file: /object/path" into buf for messages, where the object is name below loc (or loc
 * itself when name is NULL). A temporary file is named by its final path. */
static const char *where(hid_t loc, const char *name, char *buf, size_t size)
{
    char file[WHERE_MAX], object[WHERE_MAX];
    if (H5Fget_name(loc, file, sizeof file) <= 0)
        snprintf(file, sizeof file, "?");
    char *tmp = strstr(file, ".tmp.");
    if (tmp && tmp[5] && strspn(tmp + 5, "0123456789") == strlen(tmp + 5))
        *tmp = '\0';
    if (H5Iget_name(loc, object, sizeof object) <= 0)
        snprintf(object, sizeof object, "/");
    /* each part is cut at 300 characters so the message always fits */
    if (!name || !*name)
        snprintf(buf, size, "%.300s: %.300s", file, object);
    else if (name[0] == '/')
        snprintf(buf, size, "%.300s: %.300s", file, name);
    else
        snprintf(buf, size, "%.300s: %.300s%s%.300s", file, object,
                 object[strlen(object) - 1] == '/' ? "" : "/", name);
    return buf;
}

/* Names a file-resident type ("uint8", "float64", "string", ...) for messages. */
static const char *describe_type(hid_t type, char *buf, size_t size)
{
    H5T_class_t cls = H5Tget_class(type);
    size_t bits = 8 * H5Tget_size(type);
    if (cls == H5T_INTEGER)
        snprintf(buf, size, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bits);
    else if (cls == H5T_FLOAT)
        snprintf(buf, size, "float%zu", bits);
    else if (cls == H5T_STRING)
        snprintf(buf, size, "string");
    else if (cls == H5T_COMPOUND)
        snprintf(buf, size, "compound");
    else
        snprintf(buf, size, "type class %d", (int)cls);
    return buf;
}

static int type_matches(hid_t stored, enum h5_type type)
{
    H5T_class_t cls = H5Tget_class(stored);
    size_t size = H5Tget_size(stored);
    if (size != h5_type_size(type))
        return 0;
    switch (type) {
    case H5_U8: return cls == H5T_INTEGER && H5Tget_sign(stored) == H5T_SGN_NONE;
    case H5_I32:
    case H5_I64: return cls == H5T_INTEGER && H5Tget_sign(stored) == H5T_SGN_2;
    case H5_F32:
    case H5_F64: return cls == H5T_FLOAT;
    default: return 0;
    }
}

/* A file access list: closing the file closes what is still open in it, and file locking is
 * skipped where the file system does not support it (common on parallel file systems). */
static hid_t file_access_list(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0)
        return -1;
    if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        H5Pclose(fapl);
        return -1;
    }
#if H5_VERSION_GE(1, 10, 7)
    if (H5Pset_file_locking(fapl, 1, 1) < 0) {
        H5Pclose(fapl);
        return -1;
    }
#endif
    return fapl;
}

/* ---- files ---------------------------------------------------------------------------- */

hid_t h5_create_tmp(const char *path, char *tmp_out, size_t tmp_size)
{
    quiet();
    int n = snprintf(tmp_out, tmp_size, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= tmp_size)
        return offnas_error("%s: path too long", path);
    /* Create it with plain open() first: HDF5 does not say why a create failed, errno does. */
    int fd = open(tmp_out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return offnas_error("%s: cannot create %s: %s", path, tmp_out, strerror(errno));
    close(fd);
    /* The 1.8 file format and later: superblock, object headers, heaps and B-trees carry
     * checksums, so damaged metadata fails with an error when it is read instead of being
     * parsed (HDF5 1.10's parsers of the older, unchecked format crash on some damaged
     * headers: tests/fuzz/open). h5dump, h5py and any HDF5 >= 1.8 read these files. */
    hid_t fapl = file_access_list();
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0) {
        H5Pclose(fapl);
        fapl = -1;
    }
    hid_t file = fapl < 0 ? -1 : H5Fcreate(tmp_out, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (file < 0) {
        unlink(tmp_out);
        return offnas_error("%s: cannot create HDF5 file %s", path, tmp_out);
    }
    return file;
}

/* Makes a rename durable: fsync the directory holding path. Best effort, since some file
 * systems refuse fsync on directories; the data itself has already been synced. */
static void sync_directory(const char *path)
{
    char dir[H5_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int h5_commit(hid_t file, const char *tmp, const char *path)
{
    quiet();
    if (H5Fflush(file, H5F_SCOPE_LOCAL) < 0) {
        offnas_error("%s: cannot flush %s", path, tmp);
        h5_abort(file, tmp);
        return -1;
    }
    if (H5Fclose(file) < 0) {
        offnas_error("%s: cannot close %s", path, tmp);
        h5_abort(-1, tmp);
        return -1;
    }
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        offnas_error("%s: cannot sync %s: %s", path, tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        h5_abort(-1, tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        offnas_error("%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
        h5_abort(-1, tmp);
        return -1;
    }
    sync_directory(path);
    return 0;
}

void h5_abort(hid_t file, const char *tmp)
{
    quiet();
    if (file >= 0)
        H5Fclose(file);
    if (tmp)
        unlink(tmp);
}

hid_t h5_open_read(const char *path)
{
    quiet();
    struct stat st;
    if (stat(path, &st) != 0)
        return offnas_error("%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return offnas_error("%s: is a directory, not an HDF5 file", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return offnas_error("%s: cannot open: %s", path, strerror(errno));
    close(fd);
    htri_t is_hdf5 = H5Fis_hdf5(path);
    if (is_hdf5 <= 0)
        return offnas_error("%s: not an HDF5 file", path);
    hid_t fapl = file_access_list();
    hid_t file = fapl < 0 ? -1 : H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (file < 0)
        return offnas_error("%s: cannot open HDF5 file (damaged, or locked by a writer?)", path);
    return file;
}

void h5_close(hid_t id)
{
    if (id < 0)
        return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
}

/* ---- groups and existence ------------------------------------------------------------- */

int h5_exists(hid_t loc, const char *path)
{
    quiet();
    char w[WHERE_MAX], buf[WHERE_MAX];
    size_t len = strlen(path);
    if (len >= sizeof buf)
        return offnas_error("%s: path too long", where(loc, NULL, w, sizeof w));
    memcpy(buf, path, len + 1);
    /* Check each prefix "a", "a/b", ... in turn: H5Lexists fails on a missing intermediate. */
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        if (buf[i - 1] == '/')
            continue; /* "/" at the start, or "//" */
        char saved = buf[i];
        buf[i] = '\0';
        htri_t found = H5Lexists(loc, buf, H5P_DEFAULT);
        buf[i] = saved;
        if (found < 0) {
            buf[i] = '\0';
            return offnas_error("%s: cannot look up (is a parent not a group?)",
                                where(loc, buf, w, sizeof w));
        }
        if (!found)
            return 0;
    }
    return 1;
}

/* A link-creation list that creates missing intermediate groups. */
static hid_t intermediate_groups_list(void)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        H5Pclose(lcpl);
        return -1;
    }
    return lcpl;
}

hid_t h5_group(hid_t loc, const char *path)
{
    quiet();
    char w[WHERE_MAX];
    int found = h5_exists(loc, path);
    if (found < 0)
        return -1;
    if (found) {
        hid_t group = H5Gopen2(loc, path, H5P_DEFAULT);
        if (group < 0)
            return offnas_error("%s: not a group", where(loc, path, w, sizeof w));
        return group;
    }
    hid_t lcpl = intermediate_groups_list();
    hid_t group = lcpl < 0 ? -1 : H5Gcreate2(loc, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (group < 0)
        return offnas_error("%s: cannot create group", where(loc, path, w, sizeof w));
    return group;
}

/* ---- data sets ------------------------------------------------------------------------ */

/* Chunked, shuffled and deflated storage with chunks of about 1 MiB along dimension 0. Returns
 * 0, or -1 when the data set cannot be chunked (empty, or rows too large): store contiguous. */
static int set_compression(hid_t dcpl, enum h5_type type, int rank, const hsize_t *dims,
                           int level)
{
    if (rank < 1)
        return -1;
    hsize_t row_bytes = h5_type_size(type);
    for (int i = 0; i < rank; i++)
        if (dims[i] == 0)
            return -1;
    for (int i = 1; i < rank; i++)
        row_bytes *= dims[i];
    if (row_bytes > ((hsize_t)1 << 30))
        return -1;
    hsize_t chunk[H5_MAX_RANK];
    memcpy(chunk, dims, (size_t)rank * sizeof *dims);
    hsize_t rows = ((hsize_t)1 << 20) / row_bytes;
    chunk[0] = rows < 1 ? 1 : rows > dims[0] ? dims[0] : rows;
    /* fletcher32 last: a damaged chunk fails its checksum before it is inflated */
    if (H5Pset_chunk(dcpl, rank, chunk) < 0 || H5Pset_shuffle(dcpl) < 0 ||
        H5Pset_deflate(dcpl, (unsigned)level) < 0 || H5Pset_fletcher32(dcpl) < 0)
        return -2;
    return 0;
}

int h5_write(hid_t loc, const char *name, enum h5_type type, int rank, const hsize_t *dims,
             const void *data, int gzip_level)
{
    quiet();
    char w[WHERE_MAX];
    where(loc, name, w, sizeof w);
    if (rank < 0 || rank > H5_MAX_RANK)
        return offnas_error("%s: rank %d not supported", w, rank);
    if (gzip_level < 0 || gzip_level > 9)
        return offnas_error("%s: gzip level %d not in 0..9", w, gzip_level);
    if (gzip_level > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0)
        return offnas_error("%s: this HDF5 library has no gzip filter", w);
    int found = h5_exists(loc, name);
    if (found < 0)
        return -1;
    if (found)
        return offnas_error("%s: already exists", w);

    int rc = -1;
    hid_t space = -1, dcpl = -1, lcpl = -1, dset = -1;
    space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    lcpl = intermediate_groups_list();
    if (space < 0 || dcpl < 0 || lcpl < 0) {
        offnas_error("%s: cannot set up data set properties", w);
        goto done;
    }
    if (gzip_level > 0 && set_compression(dcpl, type, rank, dims, gzip_level) == -2) {
        offnas_error("%s: cannot set up compression", w);
        goto done;
    }
    dset = H5Dcreate2(loc, name, file_type(type), space, lcpl, dcpl, H5P_DEFAULT);
    if (dset < 0) {
        offnas_error("%s: cannot create data set", w);
        goto done;
    }
    hssize_t points = H5Sget_simple_extent_npoints(space);
    if (points > 0) {
        OFFNAS_ASSERT(data != NULL);
        if (H5Dwrite(dset, memory_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
            offnas_error("%s: cannot write data set (disk full?)", w);
            goto done;
        }
    }
    rc = 0;
done:
    if (dset >= 0)
        H5Dclose(dset);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

/* Opens data set name below loc and checks its type and rank; dims_out receives its shape.
 * Returns the data set id, or -1 with an error. */
static hid_t open_checked(hid_t loc, const char *name, enum h5_type type, int rank,
                          hsize_t *dims_out, char *w, size_t w_size)
{
    where(loc, name, w, w_size);
    if (rank < 0 || rank > H5_MAX_RANK)
        return offnas_error("%s: rank %d not supported", w, rank);
    int found = h5_exists(loc, name);
    if (found < 0)
        return -1;
    if (!found)
        return offnas_error("%s: missing (no such data set)", w);
    hid_t dset = H5Dopen2(loc, name, H5P_DEFAULT);
    if (dset < 0)
        return offnas_error("%s: not a data set", w);
    hid_t stored = H5Dget_type(dset);
    hid_t space = H5Dget_space(dset);
    if (stored < 0 || space < 0) {
        offnas_error("%s: cannot read type or shape", w);
        goto fail;
    }
    if (!type_matches(stored, type)) {
        char found_name[64];
        offnas_error("%s: expected %s, found %s", w, h5_type_name(type),
                     describe_type(stored, found_name, sizeof found_name));
        goto fail;
    }
    H5S_class_t space_class = H5Sget_simple_extent_type(space);
    if (space_class != H5S_SIMPLE && space_class != H5S_SCALAR) {
        offnas_error("%s: has no data space", w);
        goto fail;
    }
    int stored_rank = H5Sget_simple_extent_ndims(space);
    if (stored_rank != rank) {
        offnas_error("%s: expected rank %d, found %d", w, rank, stored_rank);
        goto fail;
    }
    if (rank > 0 && H5Sget_simple_extent_dims(space, dims_out, NULL) < 0) {
        offnas_error("%s: cannot read shape", w);
        goto fail;
    }
    H5Tclose(stored);
    H5Sclose(space);
    return dset;
fail:
    if (stored >= 0)
        H5Tclose(stored);
    if (space >= 0)
        H5Sclose(space);
    H5Dclose(dset);
    return -1;
}

int h5_shape(hid_t loc, const char *name, enum h5_type type, int rank, hsize_t *dims_out)
{
    quiet();
    char w[WHERE_MAX];
    hid_t dset = open_checked(loc, name, type, rank, dims_out, w, sizeof w);
    if (dset < 0)
        return -1;
    H5Dclose(dset);
    return 0;
}

/* Elements in a shape of rank dims, or -1 if the byte count of that many elements of
 * elem_size would not fit in a size_t. */
static long long element_count(int rank, const hsize_t *dims, size_t elem_size)
{
    hsize_t total = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] != 0 && total > (hsize_t)(SIZE_MAX / elem_size) / dims[i])
            return -1;
        total *= dims[i];
    }
    return (long long)total;
}

void *h5_read(hid_t loc, const char *name, enum h5_type type, int rank, hsize_t *dims_out)
{
    quiet();
    char w[WHERE_MAX];
    hsize_t dims[H5_MAX_RANK];
    hid_t dset = open_checked(loc, name, type, rank, dims, w, sizeof w);
    if (dset < 0)
        return NULL;
    long long total = element_count(rank, dims, h5_type_size(type));
    if (total < 0) {
        offnas_error("%s: too large to read", w);
        H5Dclose(dset);
        return NULL;
    }
    void *buf = offnas_malloc((size_t)total * h5_type_size(type));
    if (total > 0 &&
        H5Dread(dset, memory_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        offnas_error("%s: cannot read data (damaged file?)", w);
        free(buf);
        H5Dclose(dset);
        return NULL;
    }
    H5Dclose(dset);
    if (dims_out && rank > 0)
        memcpy(dims_out, dims, (size_t)rank * sizeof *dims);
    return buf;
}

int h5_read_rows(hid_t loc, const char *name, enum h5_type type, int rank, hsize_t start,
                 hsize_t count, void *buf)
{
    quiet();
    char w[WHERE_MAX];
    if (rank < 1)
        return offnas_error("%s: a row range needs rank >= 1", where(loc, name, w, sizeof w));
    hsize_t dims[H5_MAX_RANK];
    hid_t dset = open_checked(loc, name, type, rank, dims, w, sizeof w);
    if (dset < 0)
        return -1;
    if (start > dims[0] || count > dims[0] - start) {
        H5Dclose(dset);
        return offnas_error("%s: rows [%llu, %llu) outside its %llu rows", w,
                            (unsigned long long)start, (unsigned long long)(start + count),
                            (unsigned long long)dims[0]);
    }
    if (count == 0) {
        H5Dclose(dset);
        return 0;
    }
    hsize_t offset[H5_MAX_RANK] = {0}, shape[H5_MAX_RANK];
    memcpy(shape, dims, (size_t)rank * sizeof *dims);
    offset[0] = start;
    shape[0] = count;
    int rc = -1;
    hid_t file_space = H5Dget_space(dset);
    hid_t mem_space = H5Screate_simple(rank, shape, NULL);
    if (file_space < 0 || mem_space < 0 ||
        H5Sselect_hyperslab(file_space, H5S_SELECT_SET, offset, NULL, shape, NULL) < 0) {
        offnas_error("%s: cannot select rows", w);
    } else if (H5Dread(dset, memory_type(type), mem_space, file_space, H5P_DEFAULT, buf) < 0) {
        offnas_error("%s: cannot read rows [%llu, %llu) (damaged file?)", w,
                     (unsigned long long)start, (unsigned long long)(start + count));
    } else {
        rc = 0;
    }
    if (mem_space >= 0)
        H5Sclose(mem_space);
    if (file_space >= 0)
        H5Sclose(file_space);
    H5Dclose(dset);
    return rc;
}

/* ---- attributes ----------------------------------------------------------------------- */

int h5_attr_exists(hid_t loc, const char *name)
{
    quiet();
    htri_t found = H5Aexists(loc, name);
    if (found < 0) {
        char w[WHERE_MAX];
        return offnas_error("%s: cannot look up attribute %s", where(loc, NULL, w, sizeof w),
                            name);
    }
    return found > 0;
}

/* Writes a scalar attribute of file type stored from memory of type memory. */
static int attr_set(hid_t loc, const char *name, hid_t stored, hid_t memory, const void *value)
{
    char w[WHERE_MAX];
    where(loc, NULL, w, sizeof w);
    int found = h5_attr_exists(loc, name);
    if (found < 0)
        return -1;
    if (found && H5Adelete(loc, name) < 0)
        return offnas_error("%s: cannot replace attribute %s", w, name);
    int rc = -1;
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = space < 0 ? -1 : H5Acreate2(loc, name, stored, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0)
        offnas_error("%s: cannot create attribute %s", w, name);
    else if (H5Awrite(attr, memory, value) < 0)
        offnas_error("%s: cannot write attribute %s", w, name);
    else
        rc = 0;
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

int h5_attr_set_string(hid_t loc, const char *name, const char *value)
{
    quiet();
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0 || H5Tset_size(type, strlen(value) + 1) < 0 ||
        H5Tset_strpad(type, H5T_STR_NULLTERM) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0) {
        char w[WHERE_MAX];
        if (type >= 0)
            H5Tclose(type);
        return offnas_error("%s: cannot make string type for attribute %s",
                            where(loc, NULL, w, sizeof w), name);
    }
    int rc = attr_set(loc, name, type, type, value);
    H5Tclose(type);
    return rc;
}

int h5_attr_set_int(hid_t loc, const char *name, int64_t value)
{
    quiet();
    return attr_set(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

int h5_attr_set_double(hid_t loc, const char *name, double value)
{
    quiet();
    return attr_set(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

/* Opens scalar attribute name of loc; *stored receives its type (caller closes both). */
static hid_t attr_open(hid_t loc, const char *name, hid_t *stored, char *w, size_t w_size)
{
    where(loc, NULL, w, w_size);
    int found = h5_attr_exists(loc, name);
    if (found < 0)
        return -1;
    if (!found)
        return offnas_error("%s: attribute %s missing", w, name);
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    if (attr < 0)
        return offnas_error("%s: cannot open attribute %s", w, name);
    hid_t space = H5Aget_space(attr);
    hssize_t points = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    if (space >= 0)
        H5Sclose(space);
    if (points != 1) {
        H5Aclose(attr);
        return offnas_error("%s: attribute %s is not a single value", w, name);
    }
    *stored = H5Aget_type(attr);
    if (*stored < 0) {
        H5Aclose(attr);
        return offnas_error("%s: cannot read the type of attribute %s", w, name);
    }
    return attr;
}

char *h5_attr_get_string(hid_t loc, const char *name)
{
    quiet();
    char w[WHERE_MAX], type_name[64];
    hid_t stored = -1;
    hid_t attr = attr_open(loc, name, &stored, w, sizeof w);
    if (attr < 0)
        return NULL;
    char *result = NULL;
    if (H5Tget_class(stored) != H5T_STRING) {
        offnas_error("%s: attribute %s: expected a string, found %s", w, name,
                     describe_type(stored, type_name, sizeof type_name));
    } else if (H5Tis_variable_str(stored) > 0) {
        hid_t memory = H5Tcopy(H5T_C_S1);
        char *value = NULL;
        if (memory < 0 || H5Tset_size(memory, H5T_VARIABLE) < 0 ||
            H5Tset_cset(memory, H5Tget_cset(stored)) < 0 || H5Aread(attr, memory, &value) < 0)
            offnas_error("%s: cannot read attribute %s", w, name);
        else {
            size_t len = value ? strlen(value) : 0;
            result = offnas_malloc(len + 1);
            memcpy(result, value ? value : "", len + 1);
        }
        if (value)
            H5free_memory(value);
        if (memory >= 0)
            H5Tclose(memory);
    } else {
        size_t size = H5Tget_size(stored);
        char *value = offnas_calloc(size + 1, 1);
        if (H5Aread(attr, stored, value) < 0) {
            offnas_error("%s: cannot read attribute %s", w, name);
            free(value);
        } else {
            if (H5Tget_strpad(stored) == H5T_STR_SPACEPAD)
                for (size_t n = strlen(value); n > 0 && value[n - 1] == ' '; n--)
                    value[n - 1] = '\0';
            result = value;
        }
    }
    H5Tclose(stored);
    H5Aclose(attr);
    return result;
}

/* Reads a scalar numeric attribute into memory type memory; integers_only refuses floats. */
static int attr_get_number(hid_t loc, const char *name, hid_t memory, int integers_only,
                           void *value)
{
    char w[WHERE_MAX], type_name[64];
    hid_t stored = -1;
    hid_t attr = attr_open(loc, name, &stored, w, sizeof w);
    if (attr < 0)
        return -1;
    H5T_class_t cls = H5Tget_class(stored);
    int rc = -1;
    if (cls != H5T_INTEGER && (integers_only || cls != H5T_FLOAT))
        offnas_error("%s: attribute %s: expected %s, found %s", w, name,
                     integers_only ? "an integer" : "a number",
                     describe_type(stored, type_name, sizeof type_name));
    else if (H5Aread(attr, memory, value) < 0)
        offnas_error("%s: cannot read attribute %s", w, name);
    else
        rc = 0;
    H5Tclose(stored);
    H5Aclose(attr);
    return rc;
}

int h5_attr_get_int(hid_t loc, const char *name, int64_t *value)
{
    quiet();
    return attr_get_number(loc, name, H5T_NATIVE_INT64, 1, value);
}

int h5_attr_get_double(hid_t loc, const char *name, double *value)
{
    quiet();
    return attr_get_number(loc, name, H5T_NATIVE_DOUBLE, 0, value);
}
