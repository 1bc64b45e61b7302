/* cmd_bench: `offnas bench train | infer | search`: training steps, the batch-1 forward and
 * search steps, timed. */
#include "cmd.h"
#include "common.h"
#include "dist.h"
#include "latency_measure.h"
#include "net.h"
#include "op.h"
#include "optim.h"
#include "rng.h"
#include "search.h"
#include "train.h"

#include <stdlib.h>
#include <string.h>

static const char BENCH_USAGE[] =
    "usage: offnas bench train [--job FILE] [--set K=V ...] [--threads N] [--batch B]\n"
    "                          [--steps S] [--windows W]\n"
    "\n"
    "Times forward + backward + SGD update of the job's fixed network on synthetic data: S\n"
    "warm-up steps, then W timed windows of S steps. Prints each window and, as the last line,\n"
    "images_per_second: X (the median window). Defaults: threads 1, batch 64, S 30, W 7.\n";

static int bench_train(int argc, char **argv)
{
    int threads = 1, batch = 64, steps = 30, windows = 7;
    const struct cmd_option options[] = {{"--threads", CMD_COUNT, &threads, 0, 100000},
                                         {"--batch", CMD_COUNT, &batch, 1, 100000},
                                         {"--steps", CMD_COUNT, &steps, 1, 100000},
                                         {"--windows", CMD_COUNT, &windows, 1, 100000}};
    struct job job;
    int status = cmd_parse_job(&job, argc, argv, "bench train", BENCH_USAGE, options, 4);
    if (status != CMD_CONTINUE)
        return status;
    op_set_threads(threads);
    int side = job.data_resize, classes = 10;
    struct net *net = net_create(&job.net, batch, side, 1, classes, 1, (uint64_t)job.train_seed);
    if (!net) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    size_t n = (size_t)batch * side * side;
    float *x = offnas_malloc(n * sizeof(float));
    unsigned char *labels = offnas_malloc((size_t)batch);
    float *mom = offnas_calloc(net->param_count, sizeof(float));
    struct rng rng;
    rng_seed(&rng, 1, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(&rng);
    for (int i = 0; i < batch; i++)
        labels[i] = (unsigned char)rng_below(&rng, classes);
    printf("offnas bench train: threads %d batch %d side %d params %zu MACs/image %.2fM\n"
           "blas_core: %s\n",
           op_get_threads(), batch, side, net_param_count_chosen(net), net_macs_chosen(net) / 1e6,
           op_blas_core());
    double *rates = offnas_malloc((size_t)windows * sizeof(double));
    const struct train_hparams hp = {0.01f, 0.9f, 4e-5f, 0.0f};
    for (int w = -1; w < windows; w++) {
        double t0 = offnas_now();
        for (int s = 0; s < steps; s++) {
            train_step(net, mom, x, labels, batch, &hp, NULL, NULL);
        }
        double rate = (double)batch * steps / (offnas_now() - t0);
        if (w >= 0) {
            rates[w] = rate;
            printf("window %d: %.1f images/s\n", w + 1, rate);
        }
    }
    qsort(rates, (size_t)windows, sizeof(double), offnas_compare_double);
    printf("images_per_second: %.1f\n", rates[windows / 2]);
    free(rates);
    free(x);
    free(labels);
    free(mom);
    net_free(net);
    return 0;
}

#define INFER_WARMUP 50 /* untimed forwards before the timed ones */

static const char INFER_USAGE[] =
    "usage: offnas bench infer [--job FILE] [--set K=V ...] [--threads N] [--runs R]\n"
    "\n"
    "Times the batch-1 forward pass (eval mode) of the job's fixed network: 50 warm-up runs,\n"
    "then R timed runs (default 500). Prints p10, p90 and, as the last line,\n"
    "batch1_latency_ms: X (the median): the figure `offnas profile` tables should add up to.\n";

static int bench_infer(int argc, char **argv)
{
    int threads = 1, runs = 500;
    const struct cmd_option options[] = {{"--threads", CMD_COUNT, &threads, 0, 1000000},
                                         {"--runs", CMD_COUNT, &runs, 1, 1000000}};
    struct job job;
    int status = cmd_parse_job(&job, argc, argv, "bench infer", INFER_USAGE, options, 2);
    if (status != CMD_CONTINUE)
        return status;
    op_set_threads(threads);
    int side = job.data_resize;
    struct net *net = net_create(&job.net, 1, side, 1, 10, 1, (uint64_t)job.train_seed);
    if (!net) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    float *x = offnas_malloc((size_t)side * side * sizeof(float));
    struct rng rng;
    rng_seed(&rng, 1, 0);
    for (int i = 0; i < side * side; i++)
        x[i] = (float)rng_normal(&rng);
    struct timing t = latency_forward_timing(net, x, INFER_WARMUP, runs);
    printf("offnas bench infer: threads %d side %d MACs %.2fM\nblas_core: %s\np10_ms: %.4f\n"
           "p90_ms: %.4f\nbatch1_latency_ms: %.4f\n",
           op_get_threads(), side, net_macs_chosen(net) / 1e6, op_blas_core(), t.p10, t.p90,
           t.median);
    free(x);
    net_free(net);
    return 0;
}

static const char SEARCH_BENCH_USAGE[] =
    "usage: [mpirun -np T] offnas bench search --job FILE [--set K=V ...] [--steps N]\n"
    "       [--warmup W]\n"
    "\n"
    "Times search steps (a weight step and an architecture step each) on the trainer ranks:\n"
    "prints the median step time and its two halves, the median training step of the fixed\n"
    "network of each weight step's sampled ops on the same batch (fixed_step_ms) and the\n"
    "medians of the per-step ratios to it, images/s per trainer and overall (both batches of\n"
    "a step, global batch train.batch), the share of step time spent waiting on the gradient\n"
    "allreduce, and its bytes and messages per step. Profiler ranks (cluster.profilers) serve\n"
    "their tables as in a search.\n";

static int bench_search(int argc, char **argv)
{
    int steps = 20, warmup = 3;
    const struct cmd_option options[] = {{"--steps", CMD_COUNT, &steps, 1, 1000000},
                                         {"--warmup", CMD_COUNT, &warmup, 0, 1000000}};
    struct job job;
    int status = cmd_parse_job(&job, argc, argv, "bench search", SEARCH_BENCH_USAGE, options, 2);
    if (status != CMD_CONTINUE)
        return status;
    status = cmd_join_ranks(&job, NULL, 1);
    if (status != CMD_CONTINUE)
        return status;
    struct search_bench b;
    if (search_bench(&job, warmup, steps, &b)) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    if (dist_get()->rank == 0)
        printf("offnas bench search: trainers %d global batch %d threads %d steps %d\n"
               "blas_core: %s\nstep_ms: %.2f\nweight_step_ms: %.2f\narch_step_ms: %.2f\n"
               "fixed_step_ms: %.2f\nsearch_over_fixed: %.3f\nweight_over_fixed: %.3f\n"
               "images_per_second_per_trainer: %.1f\n"
               "images_per_second: %.1f\nallreduce_wait_share: %.3f\n"
               "allreduce_bytes_per_step: %ld\nallreduce_messages_per_step: %.1f\n",
               b.trainers, job.train_batch, op_get_threads(), steps, op_blas_core(), b.step_ms,
               b.weight_step_ms, b.arch_step_ms, b.fixed_step_ms, b.search_over_fixed,
               b.weight_over_fixed, b.images_per_second / b.trainers, b.images_per_second,
               b.wait_share, b.reduced_bytes_per_step, b.reduced_messages_per_step);
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs("usage: offnas bench train|infer|search [options]   (offnas bench train --help)\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train"))
        return bench_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "infer"))
        return bench_infer(argc - 1, argv + 1);
    if (!strcmp(argv[1], "search"))
        return bench_search(argc - 1, argv + 1);
    return cmd_usage_error("bench: unknown benchmark '%s'", argv[1]);
}
