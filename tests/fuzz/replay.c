/* replay: a main for the fuzz targets in a normal (gcc) build. Runs LLVMFuzzerTestOneInput
 * once on every file given, and on every file of every folder given (not recursive, in name
 * order), so `ctest -L fuzz` replays the seed corpus and the crash inputs found so far without
 * libFuzzer; under -DOFFNAS_SANITIZE=ON a bug an input reaches fails the test.
 *
 *     fuzz_job_ini tests/fuzz/corpus/job_ini [FILE...]
 */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_lib.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Reads the whole file and runs the target on it. Returns 0, or -1 if it cannot be read. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t size = 0, cap = 4096;
    uint8_t *data = malloc(cap);
    size_t got;
    while (data && (got = fread(data + size, 1, cap - size, f)) > 0) {
        size += got;
        if (size == cap) {
            uint8_t *grown = realloc(data, cap *= 2);
            if (!grown)
                free(data);
            data = grown;
        }
    }
    int bad = !data || ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(data);
        return -1;
    }
    /* an exact-size copy, so ASan catches a read one byte past the input */
    uint8_t *input = malloc(size ? size : 1);
    if (!input)
        abort();
    memcpy(input, data, size);
    free(data);
    LLVMFuzzerTestOneInput(input, size);
    free(input);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of the folder, in name order. Returns the number replayed, or -1. */
static int replay_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown)
                abort();
            names = grown;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        names[count] = malloc(len);
        if (!names[count])
            abort();
        snprintf(names[count++], len, "%s/%s", path, e->d_name);
    }
    closedir(d);
    if (count)
        qsort(names, count, sizeof *names, by_name);
    int replayed = 0, rc = 0;
    for (size_t i = 0; i < count; i++) {
        struct stat st;
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (replay_file(names[i]))
                rc = -1;
            else
                replayed++;
        }
        free(names[i]);
    }
    free(names);
    return rc ? -1 : replayed;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_FOLDER...\n", argv[0]);
        return 2;
    }
    int replayed = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st)) {
            perror(argv[i]);
            failed = 1;
        } else if (S_ISDIR(st.st_mode)) {
            int n = replay_dir(argv[i]);
            failed |= n < 0;
            replayed += n > 0 ? n : 0;
        } else if (replay_file(argv[i])) {
            failed = 1;
        } else {
            replayed++;
        }
    }
    printf("%s: replayed %d inputs\n", argv[0], replayed);
    return failed || replayed == 0;
}
