/* tiny_space: what the latency tests share: a job of a tiny search space (three layers of
 * up to four candidates, 12x12 inputs), its supernet, and a per-process temporary folder
 * removed at exit. Header-only with static inline functions; the including test defines
 * _POSIX_C_SOURCE 200809L (mkdtemp, strtok_r) before its first include. */
#ifndef OFFNAS_TEST_TINY_SPACE_H
#define OFFNAS_TEST_TINY_SPACE_H

#include "testing.h"

#include "job.h"
#include "net.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmp_dir[64];

/* Removes the temporary folder and the files the tests left in it. */
static inline void remove_tmp_dir(void)
{
    DIR *d = opendir(tmp_dir);
    if (!d)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
            remove(path);
        }
    closedir(d);
    rmdir(tmp_dir);
}

/* A job of the tiny space used throughout; extra: more "section.key=value" overrides separated
 * by ';', or NULL. */
static inline struct job tiny_job(const char *extra)
{
    struct job job;
    job_defaults(&job);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.layers=6/1, 8/2, 8/1"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.ops=k3e1, k5e3, k3e3"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.candidates=k3e1, k5e3, k3e3, skip"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.stem=4"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.head=10"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "data.resize=12"), 0);
    char more[256];
    snprintf(more, sizeof more, "%s", extra ? extra : "");
    for (char *save = NULL, *set = strtok_r(more, ";", &save); set; set = strtok_r(NULL, ";", &save))
        CU_ASSERT_EQUAL_FATAL(job_set(&job, set), 0);
    CU_ASSERT_EQUAL_FATAL(job_finalize(&job), 0);
    return job;
}

/* The supernet of tiny_job(extra) at batch 1 (one channel, ten classes). */
static inline struct net *tiny_net(const char *extra, uint64_t seed)
{
    struct job job = tiny_job(extra);
    struct net *net = net_create(&job.net, 1, job.data_resize, 1, 10, 0, seed);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    return net;
}

/* A fresh file name in a per-process temporary folder. */
static inline const char *tmp_path(const char *name)
{
    static char path[256];
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/offnas_test_latency.XXXXXX");
        CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(tmp_dir));
        atexit(remove_tmp_dir);
    }
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

#endif
