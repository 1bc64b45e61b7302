/* fixture: temporary folders and the Fashion-MNIST file of fixture.h. */
#define _XOPEN_SOURCE 700
#include "fixture.h"

#include "testing.h"

#include "common.h"
#include "data.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_BUFFERS 16

static char root[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_root(void)
{
    if (root[0])
        nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *temp_root(void)
{
    if (root[0])
        return root;
    snprintf(root, sizeof root, "/tmp/offnas_test_%s.XXXXXX",
             test_suite_name ? test_suite_name : "lib");
    CU_ASSERT_FATAL(mkdtemp(root) != NULL);
    atexit(remove_root);
    offnas_log_quiet = 1;
    return root;
}

const char *path_in(const char *dir, const char *name)
{
    static char path[PATH_BUFFERS][512];
    static int next;
    char *p = path[next++ % PATH_BUFFERS];
    snprintf(p, sizeof path[0], "%s/%s", dir, name);
    return p;
}

const char *temp_path(const char *name) { return path_in(temp_root(), name); }

const char *temp_dir(const char *name)
{
    const char *dir = temp_path(name);
    CU_ASSERT_FATAL(mkdir(dir, 0755) == 0);
    return dir;
}

const char *fashion_path(void)
{
    static char path[256];
    if (path[0])
        return path;
    snprintf(path, sizeof path, "%s/fashion-mnist.h5", temp_root());
    if (data_import_idx(FASHION_DIR, path)) {
        fprintf(stderr, "cannot import %s (tests/deps installs dataset-fashion-mnist): %s\n",
                FASHION_DIR, offnas_last_error());
        path[0] = 0;
        CU_FAIL_FATAL("Fashion-MNIST import");
    }
    return path;
}

int file_exists(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

char *read_text(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    size_t got = fread(text, 1, (size_t)n, f);
    fclose(f);
    text[got] = 0;
    return text;
}
