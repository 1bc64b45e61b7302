/* tiny: the jobs and networks of tiny.h. */
#define _POSIX_C_SOURCE 200809L
#include "tiny.h"

#include "fixture.h"
#include "testing.h"

#include "common.h"
#include "latency.h"
#include "op.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Applies the ';'-separated assignments of sets to job. */
static void apply_sets(struct job *job, const char *sets)
{
    char buf[4096];
    CU_ASSERT_FATAL(strlen(sets ? sets : "") < sizeof buf);
    snprintf(buf, sizeof buf, "%s", sets ? sets : "");
    for (char *save = NULL, *set = strtok_r(buf, ";", &save); set;
         set = strtok_r(NULL, ";", &save)) {
        int rc = job_set(job, set);
        if (rc)
            fprintf(stderr, "job_set(%s): %s\n", set, offnas_last_error());
        CU_ASSERT_EQUAL_FATAL(rc, 0);
    }
}

static void finalize(struct job *job)
{
    int rc = job_finalize(job);
    if (rc)
        fprintf(stderr, "job_finalize: %s\n", offnas_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

struct job test_job(const char *sets)
{
    struct job job;
    job_defaults(&job);
    apply_sets(&job, sets);
    finalize(&job);
    return job;
}

struct job tiny_job(const char *extra)
{
    struct job job;
    job_defaults(&job);
    apply_sets(&job, TINY_SPACE);
    apply_sets(&job, extra);
    finalize(&job);
    return job;
}

struct net *tiny_net(const char *extra, uint64_t seed)
{
    struct job job = tiny_job(extra);
    struct net *net = net_create(&job.net, 1, job.data_resize, 1, 10, 0, seed);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    return net;
}

struct job fashion_job(const char *sets)
{
    struct job job;
    char path[600];
    job_defaults(&job);
    snprintf(path, sizeof path, "data.path=%s", fashion_path());
    apply_sets(&job, path);
    apply_sets(&job, sets);
    finalize(&job);
    return job;
}

struct rng test_rng(uint64_t seed)
{
    struct rng rng;
    rng_seed(&rng, seed, 0);
    return rng;
}

void net_set_residual_scales(struct net *net, float value)
{
    for (int l = 0; l < net->layer_count; l++)
        for (int i = 0; i < net->layers[l].candidate_count; i++) {
            const struct net_block *blk = &net->layers[l].cand[i];
            if (blk->spec.kind == OP_BLOCK && blk->residual)
                for (int c = 0; c < blk->cout; c++)
                    net->params[blk->bn3.gamma + c] = value;
        }
}

void tiny_fill_table(struct latency_table *t, const struct net *net, uint64_t seed,
                     int repeats_base)
{
    latency_table_init(t, net, "tiny-device");
    snprintf(t->host, sizeof t->host, "host-1");
    snprintf(t->cpu, sizeof t->cpu, "Cortex-A76 @ 2.4GHz");
    snprintf(t->date, sizeof t->date, "2026-12-03T09:00:00Z");
    snprintf(t->source, sizeof t->source, "measured");
    t->threads = 3;
    t->version = 7;
    struct rng rng;
    rng_seed(&rng, seed, 0);
    for (int s = 0; s < t->slot_count; s++)
        for (int i = 0; i < t->op_count[s]; i++) {
            double m = 0.01 + fabs(rng_normal(&rng)) / 3.0;
            t->p10[s][i] = m * 0.9;
            t->median[s][i] = m;
            t->p90[s][i] = m * 1.1 + 1e-17;
            t->repeats[s][i] = repeats_base + s + i;
        }
}
