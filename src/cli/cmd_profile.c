/* cmd_profile: `offnas profile` (measure this machine's latency table for a job's search space)
 * and `offnas profile fit` (a table from a cost model fitted to published measurements). */
#define _POSIX_C_SOURCE 200809L
#include "cmd.h"
#include "common.h"
#include "latency.h"
#include "latency_fit.h"
#include "latency_measure.h"
#include "net.h"
#include "op.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char PROFILE_USAGE[] =
    "usage: offnas profile --job FILE --device NAME --out FILE.h5 [--set K=V ...]\n"
    "                      [--threads N] [--repeats R] [--warmup W]\n"
    "       offnas profile fit --csv FILE --job FILE --device NAME --out FILE.h5 [--scale S]\n"
    "\n"
    "Writes the latency table (profiles/README.md) of every (layer, op) of the job's search\n"
    "space ([net] layers, candidates, stem, stem_stride, head; input side data.resize; 1\n"
    "channel, 10 classes) at batch 1.\n"
    "\n"
    "profile      measures this machine: W warm-up runs, then R timed runs of each piece;\n"
    "             median, p10, p90. Defaults: threads 1, repeats 50, warmup 10.\n"
    "profile fit  fits a per-device cost model to published per-block measurements (CSV as\n"
    "             in ../shared/data/latency/), prints its held-out error and evaluates it for\n"
    "             every (layer, op); --scale S multiplies every entry (a slower device).\n"
    "\n"
    "  --job FILE     job file (INI); without it the defaults are used\n"
    "  --set K=V      override a job key (repeatable)\n"
    "  --device NAME  device name stored in the table\n"
    "  --out FILE.h5  the table (written to a temporary file, then renamed)\n";

#define PROFILE_CLASSES 10
#define PROFILE_IN_CHANNELS 1

static int parse_count(const char *option, const char *text, int lo, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > 1000000) {
        cmd_usage_error("profile: %s: '%s' is not a valid count", option, text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Sum of the table over the job's fixed ops (net.ops) plus stem and head; -1 if an op of the
 * fixed network is not a candidate of the search space. */
static double fixed_total_ms(const struct latency_table *t, const struct net *net,
                             const struct job *job)
{
    int ops[NET_MAX_LAYERS];
    for (int l = 0; l < net->layer_count; l++) {
        ops[l] = net_find_candidate(net, l, &job->net.fixed_ops[l]);
        if (ops[l] < 0)
            return -1.0;
    }
    return latency_network_ms(t, net->layer_count, ops);
}

static int report_and_save(struct latency_table *table, struct net *net, const struct job *job,
                           const char *out)
{
    int rc = latency_save(table, out);
    if (rc)
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
    else {
        double fixed = fixed_total_ms(table, net, job);
        printf("fingerprint: %016llx\n", (unsigned long long)table->fingerprint);
        if (fixed >= 0)
            printf("fixed_network_ms: %.4f\n", fixed);
        printf("profile: %s\n", out);
    }
    net_free(net);
    return rc ? 1 : 0;
}

struct profile_args {
    struct cmd_job_options job;
    const char *device, *out, *csv;
    int threads, repeats, warmup;
    double scale;
};

/* Parses the options of both forms; fit selects which are allowed. Returns 0, 1 for --help
 * (printed), or 2 after a usage error. */
static int parse_args(struct profile_args *a, int fit, int argc, char **argv)
{
    const char *cmd = fit ? "profile fit" : "profile";
    for (int i = 1; i < argc; i++) {
        int taken = cmd_take_job_option(&a->job, argc, argv, &i);
        if (taken < 0)
            return 2;
        if (taken)
            continue;
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            fputs(PROFILE_USAGE, stdout);
            return 1;
        }
        if (i + 1 >= argc)
            return cmd_usage_error("%s: unknown or incomplete option '%s'", cmd, arg);
        const char *value = argv[++i];
        if (!strcmp(arg, "--device"))
            a->device = value;
        else if (!strcmp(arg, "--out"))
            a->out = value;
        else if (fit && !strcmp(arg, "--csv"))
            a->csv = value;
        else if (fit && !strcmp(arg, "--scale")) {
            char *end;
            errno = 0;
            a->scale = strtod(value, &end);
            if (errno || end == value || *end || !isfinite(a->scale) || a->scale <= 0)
                return cmd_usage_error("%s: --scale: '%s' is not a positive number", cmd, value);
        } else if (!fit && !strcmp(arg, "--threads")) {
            if (parse_count(arg, value, 1, &a->threads))
                return 2;
        } else if (!fit && !strcmp(arg, "--repeats")) {
            if (parse_count(arg, value, 1, &a->repeats))
                return 2;
        } else if (!fit && !strcmp(arg, "--warmup")) {
            if (parse_count(arg, value, 0, &a->warmup))
                return 2;
        } else
            return cmd_usage_error("%s: unknown option '%s'", cmd, arg);
    }
    if (!a->device || !a->device[0])
        return cmd_usage_error("%s: --device NAME is required", cmd);
    if (!a->out)
        return cmd_usage_error("%s: --out FILE.h5 is required", cmd);
    if (fit && !a->csv)
        return cmd_usage_error("%s: --csv FILE is required", cmd);
    return 0;
}

/* The supernet of the job at batch 1, or NULL after printing the error. */
static struct net *space_net(const struct job *job)
{
    struct net *net = net_create(&job->net, 1, job->data_resize, PROFILE_IN_CHANNELS, PROFILE_CLASSES,
                                 0, (uint64_t)job->train_seed);
    if (!net)
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
    return net;
}

static int profile_fit(int argc, char **argv)
{
    struct profile_args a = {.scale = 1.0};
    int parsed = parse_args(&a, 1, argc, argv);
    if (parsed)
        return parsed == 1 ? 0 : parsed;
    struct job job;
    if (cmd_load_job(&job, &a.job))
        return 1;
    struct latency_fit fit;
    if (latency_fit_csv(&fit, a.csv)) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    struct net *net = space_net(&job);
    if (!net)
        return 1;
    struct latency_table table;
    latency_table_init(&table, net, a.device);
    if (latency_fit_table(&table, &fit, net, a.scale)) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        net_free(net);
        return 1;
    }
    snprintf(table.host, sizeof table.host, "none");
    latency_now_iso8601(table.date, sizeof table.date);
    printf("device: %s (csv: %s)\n", a.device, fit.device);
    printf("model: ms = %.4g*pw_MACs + %.4g*dw_MACs + %.4g*bytes + %.4g\n",
           fit.coef[LATENCY_FIT_PW], fit.coef[LATENCY_FIT_DW], fit.coef[LATENCY_FIT_BYTES],
           fit.coef[LATENCY_FIT_BIAS]);
    printf("stem: ms = %.4g*MACs + %.4g (%d firstconv rows)\n", fit.stem_coef[0],
           fit.stem_coef[1], fit.stem_rows);
    printf("rows: %d fit, %d held out\n", fit.train_rows, fit.test_rows);
    printf("held_out_mape_percent: %.2f\nheld_out_rmse_ms: %.4f\n", fit.mape, fit.rmse_ms);
    if (a.scale != 1.0)
        printf("scale: %g\n", a.scale);
    return report_and_save(&table, net, &job, a.out);
}

int cmd_profile(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "fit"))
        return profile_fit(argc - 1, argv + 1);
    struct profile_args a = {.threads = 1, .repeats = 50, .warmup = 10};
    int parsed = parse_args(&a, 0, argc, argv);
    if (parsed)
        return parsed == 1 ? 0 : parsed;
    struct job job;
    if (cmd_load_job(&job, &a.job))
        return 1;
    struct net *net = space_net(&job);
    if (!net)
        return 1;
    op_set_threads(a.threads);
    struct latency_table table;
    latency_table_init(&table, net, a.device);
    latency_stamp_here(&table, a.threads);
    offnas_log("profile: %s on %s (%s), %d thread(s), %d warm-up + %d timed runs per op",
               a.device, table.host, table.cpu, a.threads, a.warmup, a.repeats);
    latency_measure(&table, net, a.warmup, a.repeats);
    return report_and_save(&table, net, &job, a.out);
}
