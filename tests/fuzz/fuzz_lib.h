/* fuzz_lib: what the fuzz targets (tests/fuzz/fuzz_<name>.c) share: one private temporary
 * folder per process, the fuzzed bytes as a file or a NUL-terminated string, and the net of
 * the tiny run the HDF5 seeds of tests/fuzz/corpus/h5_load come from.
 *
 *     const char *path = fuzz_write_file("input.h5", data, size);   // in fuzz_dir()
 *     char *text = fuzz_string(data, size);                          // free(text)
 */
#ifndef OFFNAS_FUZZ_LIB_H
#define OFFNAS_FUZZ_LIB_H

#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry point, which every target defines and replay.c calls. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The job of tests/fuzz/make-corpus's tiny run ([data] and [latency] paths left out): the
 * HDF5 seeds were written for its net, so a target that builds this net gets past the size
 * checks into the reading. Keep the two in step. */
#define FUZZ_TINY_JOB                          \
    "[data]\n"                                 \
    "val_size = 16\n"                          \
    "[net]\n"                                  \
    "stem = 8\n"                               \
    "head = 32\n"                              \
    "layers = 8/1, 16/2, 16/1, 24/2\n"         \
    "candidates = k3e1, k3e3, k5e3, skip\n"    \
    "ops = k3e1, k3e3, k3e3, k5e3\n"           \
    "[train]\n"                                \
    "batch = 16\n"                             \
    "threads = 1\n"

/* The process's temporary folder (created on first use, removed with its files at exit).
 * Aborts if it cannot be made: a target without it tests nothing. */
const char *fuzz_dir(void);

/* Writes size bytes to fuzz_dir()/name (replacing it) and returns the path (a static buffer,
 * valid until the next call). Aborts on a write error. */
const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size);

/* The bytes as a malloc'd NUL-terminated string (the caller frees it); bytes after an
 * embedded NUL are kept but C string functions stop there. */
char *fuzz_string(const uint8_t *data, size_t size);

/* Quiets the library's progress output (call at the start of every input). */
void fuzz_init(void);

/* With OFFNAS_FUZZ_DEBUG=1 in the environment, prints "fuzz: WHAT: ok" or the error of a
 * failed step (rc != 0) to stderr: which seeds get how far. Returns rc. */
int fuzz_step(const char *what, int rc);

struct job;
/* The property both job targets check on a job that loaded: the INI text job_write makes of
 * it reads back (job_load_text) to a job that writes the same text. Aborts with both texts
 * otherwise. */
void fuzz_check_job_round_trip(const struct job *job);

#endif
