/* fuzz_lib: the temporary folder and input files of the fuzz targets; see fuzz_lib.h. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_lib.h"

#include "common.h"
#include "job.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

/* Removes the files of the folder, then the folder (the targets make no subfolders). */
static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            remove(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

const char *fuzz_dir(void)
{
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/offnas_fuzz.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(remove_dir);
    }
    return dir;
}

const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        perror(path);
        abort();
    }
    return path;
}

char *fuzz_string(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

void fuzz_init(void)
{
    offnas_log_quiet = 1;
}

int fuzz_step(const char *what, int rc)
{
    static int debug = -1;
    if (debug < 0) {
        const char *env = getenv("OFFNAS_FUZZ_DEBUG");
        debug = env && *env && strcmp(env, "0");
    }
    if (debug)
        fprintf(stderr, "fuzz: %s: %s\n", what, rc ? offnas_last_error() : "ok");
    return rc;
}

/* The text after the first line (job_write's "# offnas job from PATH" comment). */
static const char *after_first_line(const char *text)
{
    const char *nl = strchr(text, '\n');
    return nl ? nl + 1 : text;
}

void fuzz_check_job_round_trip(const struct job *job)
{
    char *text = job_to_string(job);
    struct job *again = malloc(sizeof *again);
    if (!again)
        abort();
    if (job_load_text(again, text, fuzz_dir(), "round-trip.ini")) {
        fprintf(stderr, "fuzz: the written job does not read back: %s\n--- written:\n%s",
                offnas_last_error(), text);
        abort();
    }
    char *text_again = job_to_string(again);
    if (strcmp(after_first_line(text), after_first_line(text_again))) {
        fprintf(stderr, "fuzz: the job read back writes another text\n--- first:\n%s"
                        "--- read back:\n%s", text, text_again);
        abort();
    }
    free(text_again);
    free(again);
    free(text);
}
