/* fixture: temporary folders and real data for the tests (tests/lib).
 *
 * Each test process gets one temporary folder, /tmp/offnas_test_<suite>.XXXXXX, made on first
 * use and removed with everything in it at exit; making it also quiets offnas_log, which the
 * tests that write files do not want on their output. The Fashion-MNIST HDF5 file is imported
 * into it once per process (about 3 s) from /usr/share/datasets/fashion-mnist (Debian's
 * dataset-fashion-mnist, installed by tests/deps).
 *
 *     const char *run = temp_path("search");          // a run folder the command creates
 *     const char *dir = temp_dir("load_refuses_x");   // a folder made for the test */
#ifndef OFFNAS_TEST_FIXTURE_H
#define OFFNAS_TEST_FIXTURE_H

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* The process's temporary folder (made on the first call). */
const char *temp_root(void);

/* dir/name, in one of 16 static buffers used in turn: valid for the next 15 calls of
 * path_in, temp_path and temp_dir. */
const char *path_in(const char *dir, const char *name);

/* temp_root()/name, not created. The buffers of path_in. */
const char *temp_path(const char *name);

/* temp_root()/name, created for the test (a fatal assertion when it cannot be). The buffers
 * of path_in. */
const char *temp_dir(const char *name);

/* The Fashion-MNIST HDF5 file, imported on first use (a fatal assertion when it cannot be). */
const char *fashion_path(void);

/* 1 when dir/name is a regular file that is not empty, else 0. */
int file_exists(const char *dir, const char *name);

/* dir/name's contents as a malloc'd string the caller frees; NULL when it cannot be read. */
char *read_text(const char *dir, const char *name);

#endif
