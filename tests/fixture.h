/* fixture: what the tests that train on real Fashion-MNIST share: a temporary folder removed
 * at exit, run folders in it, and the data set imported once per process (about 3 s) from
 * /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist, installed by tests/deps).
 * Define FIXTURE_NAME (a word naming the temporary folder) before including it. Header-only
 * with static functions: each test program includes it once. */
#ifndef OFFNAS_TEST_FIXTURE_H
#define OFFNAS_TEST_FIXTURE_H

#include "testing.h"

#include "common.h"
#include "data.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

static char temp_root[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_temp_root(void)
{
    if (temp_root[0])
        nftw(temp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void ensure_temp_root(void)
{
    if (temp_root[0])
        return;
    snprintf(temp_root, sizeof temp_root, "/tmp/offnas_test_%s.XXXXXX", FIXTURE_NAME);
    CU_ASSERT_FATAL(mkdtemp(temp_root) != NULL);
    atexit(remove_temp_root);
    offnas_log_quiet = 1;
}

/* temp_root/name (not created). Static buffers, four in rotation. */
static const char *run_dir(const char *name)
{
    static char dir[4][256];
    static int next;
    ensure_temp_root();
    char *d = dir[next++ % 4];
    snprintf(d, 256, "%s/%s", temp_root, name);
    return d;
}

/* The Fashion-MNIST HDF5 file, imported on first use and cached for the process. */
static const char *fashion_path(void)
{
    static char path[256];
    if (path[0])
        return path;
    ensure_temp_root();
    snprintf(path, sizeof path, "%s/fashion-mnist.h5", temp_root);
    if (data_import_idx(FASHION_DIR, path)) {
        fprintf(stderr, "cannot import %s (tests/deps installs dataset-fashion-mnist): %s\n",
                FASHION_DIR, offnas_last_error());
        path[0] = 0;
        CU_FAIL_FATAL("Fashion-MNIST import");
    }
    return path;
}

static int file_exists(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

#endif
