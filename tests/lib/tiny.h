/* tiny: the jobs and small networks the tests build (tests/lib).
 *
 *     struct job job = tiny_job("net.stem_stride=2");    // the tiny space, one more setting
 *     struct job run = fashion_job("train.epochs=1;train.batch=32");
 *
 * Settings are "section.key=value" assignments separated by ';'. A refused assignment or a job
 * that does not finalize is a fatal assertion that prints the error. */
#ifndef OFFNAS_TEST_TINY_H
#define OFFNAS_TEST_TINY_H

#include "job.h"
#include "net.h"
#include "rng.h"

/* The space of the dist, net and latency tests: layers 6/1, 8/2, 8/1 (stem 4, head 10) with
 * candidates k3e1, k5e3, k3e3, skip (skip only in the last layer, where the shapes allow it),
 * fixed ops k3e1, k5e3, k3e3, images 12x12; separate weights per candidate (the layout those
 * tests check; test_net checks the shared superkernel with net.supernet=shared). */
#define TINY_SPACE                                                                              \
    "net.layers=6/1, 8/2, 8/1;net.ops=k3e1, k5e3, k3e3;"                                        \
    "net.candidates=k3e1, k5e3, k3e3, skip;net.stem=4;net.head=10;data.resize=12;"              \
    "net.supernet=separate"

/* The defaults with sets applied (NULL: none), finalized. */
struct job test_job(const char *sets);

/* The job of TINY_SPACE with extra applied after it (NULL: none). */
struct job tiny_job(const char *extra);

/* The supernet of tiny_job(extra) at batch 1 (one channel, ten classes, images of
 * data.resize). */
struct net *tiny_net(const char *extra, uint64_t seed);

/* A job on the Fashion-MNIST file of fixture.h (data.path) with sets applied after it. */
struct job fashion_job(const char *sets);

struct latency_table;

/* Fills t as a table for net with distinct, non-round values in every entry (drawn with seed;
 * repeats repeats_base + slot + op) and fixed strings, threads 3, version 7. */
void tiny_fill_table(struct latency_table *t, const struct net *net, uint64_t seed,
                     int repeats_base);

/* A generator seeded with seed (stream 0). */
struct rng test_rng(uint64_t seed);

/* Sets the scale of the last batch norm of every residual block (every candidate) to value:
 * at their initial 0 they hide the block bodies from a gradient check. */
void net_set_residual_scales(struct net *net, float value);

#endif
