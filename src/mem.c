/* mem: the memory estimate of a job and the limit of this process (see mem.h). */
#define _POSIX_C_SOURCE 200809L
#include "mem.h"

#include "common.h"
#include "op.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Takes limit as the new smallest when it is below *best. */
static void take_lower(double *best, char *why, size_t why_size, double limit, const char *name)
{
    if (limit > 0 && limit < *best) {
        *best = limit;
        snprintf(why, why_size, "%s", name);
    }
}

int mem_local_ranks(void)
{
    static const char *const VARS[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS",
                                       "SLURM_NTASKS_PER_NODE"};
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(VARS); i++) {
        const char *v = getenv(VARS[i]);
        char *end;
        long n = v ? strtol(v, &end, 10) : 0;
        if (v && end != v && *end == '\0' && n >= 1 && n <= 65536)
            return (int)n;
    }
    return 1;
}

double mem_limit_bytes(char *why, size_t why_size)
{
    double best = INFINITY;
    snprintf(why, why_size, "no limit found");
    /* the node's memory (physical, its cgroup) is shared by the ranks on it; the rlimits are
     * each process's own */
    const int ranks = mem_local_ranks();
    char shared[64];
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    snprintf(shared, sizeof shared, ranks > 1 ? "physical memory / %d ranks on this node"
                                               : "physical memory", ranks);
    if (pages > 0 && page > 0)
        take_lower(&best, why, why_size, (double)pages * (double)page / ranks, shared);
    struct rlimit rl;
    if (!getrlimit(RLIMIT_AS, &rl) && rl.rlim_cur != RLIM_INFINITY)
        take_lower(&best, why, why_size, (double)rl.rlim_cur, "RLIMIT_AS");
    if (!getrlimit(RLIMIT_DATA, &rl) && rl.rlim_cur != RLIM_INFINITY)
        take_lower(&best, why, why_size, (double)rl.rlim_cur, "RLIMIT_DATA");
    /* a container's limit (cgroup v2); "max" when there is none */
    FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
    if (f) {
        char text[64] = "";
        if (fgets(text, sizeof text, f)) {
            char *end;
            double v = strtod(text, &end);
            snprintf(shared, sizeof shared, ranks > 1 ? "cgroup memory.max / %d ranks"
                                                       : "cgroup memory.max", ranks);
            if (end != text)
                take_lower(&best, why, why_size, v / ranks, shared);
        }
        fclose(f);
    }
    return best;
}

const char *mem_format(char *buf, size_t size, double bytes)
{
    static const char *const UNITS[] = {"bytes", "kB", "MB", "GB", "TB", "PB"};
    int u = 0;
    while (bytes >= 1000 && u < (int)OFFNAS_ARRAY_LEN(UNITS) - 1) {
        bytes /= 1000;
        u++;
    }
    snprintf(buf, size, u ? "%.3g %s" : "%.0f %s", bytes, UNITS[u]);
    return buf;
}

int mem_check(const char *what, double bytes)
{
    char why[64], need[32], have[32];
    double limit = mem_limit_bytes(why, sizeof why);
    if (bytes <= limit)
        return 0;
    return offnas_error("%s: needs %.0f bytes (%s), more than the %s this machine allows (%s)",
                        what, bytes, mem_format(need, sizeof need, bytes),
                        mem_format(have, sizeof have, limit), why);
}

/* The widest hidden map of a layer: its fixed op's, or the widest candidate's that fits
 * (skip only where the shape is kept, as net_shape decides). */
static double layer_hidden(const struct net_desc *desc, int l, int cin, int fixed)
{
    int cout = desc->layer_channels[l], stride = desc->layer_stride[l];
    const struct op_spec *specs = fixed ? &desc->fixed_ops[l] : desc->candidates;
    int count = fixed ? 1 : desc->candidate_count, hidden = 0;
    for (int i = 0; i < count; i++) {
        if (specs[i].kind == OP_SKIP && (stride != 1 || cin != cout))
            continue;
        int h = specs[i].kind == OP_SKIP ? cin : cin * specs[i].expand;
        hidden = h > hidden ? h : hidden;
    }
    return hidden;
}

/* Parameters of a layer's candidates: every one (separate weights), an upper bound of the
 * shared superkernel. */
static double layer_params(const struct net_desc *desc, int l, int cin, int fixed)
{
    int cout = desc->layer_channels[l];
    const struct op_spec *specs = fixed ? &desc->fixed_ops[l] : desc->candidates;
    int count = fixed ? 1 : desc->candidate_count;
    double params = 0;
    for (int i = 0; i < count; i++) {
        if (specs[i].kind == OP_SKIP)
            continue;
        double h = (double)cin * specs[i].expand, k = specs[i].kernel;
        params += (specs[i].expand != 1 ? cin * h + 2 * h : 0) + k * k * h + 2 * h + h * cout +
                  2.0 * cout;
    }
    return params;
}

/* mem_net_bytes, with the parameter count into *param_count. */
static double net_estimate(const struct net_desc *desc, int batch, int side, int in_channels,
                           int classes, int fixed, double *param_count)
{
    double B = batch, floats = 0;
    int stem_side = op_conv_out_size(side, 3, desc->stem_stride);
    double stem_pixels = B * stem_side * stem_side;
    floats += 2 * stem_pixels * 9 * in_channels;        /* im2col and its gradient */
    double max_feat = stem_pixels * desc->stem_channels, max_hid = 0;
    floats += 2 * max_feat;                               /* stem conv and BN outputs */
    double params = 9.0 * in_channels * desc->stem_channels + 2.0 * desc->stem_channels;
    double bn_channels = desc->stem_channels;
    int h = stem_side, cin = desc->stem_channels;
    for (int l = 0; l < desc->layer_count; l++) {
        int cout = desc->layer_channels[l];
        int hout = op_conv_out_size(h, 3, desc->layer_stride[l]);
        double hidden = layer_hidden(desc, l, cin, fixed);
        double pin = B * h * h, pout = B * hout * hout;
        floats += 2 * pin * hidden + 2 * pout * hidden + 2 * pout * cout;
        max_hid = fmax(max_hid, pin * hidden);
        max_feat = fmax(max_feat, fmax(pin * cin, pout * cout));
        params += layer_params(desc, l, cin, fixed);
        bn_channels += 2 * hidden + cout;
        h = hout;
        cin = cout;
    }
    double phead = B * h * h * desc->head_channels;
    floats += 2 * phead + B * (desc->head_channels + 2.0 * classes);
    max_feat = fmax(max_feat, phead);
    floats += 3 * max_feat + 2 * fmax(max_hid, max_feat); /* backward scratch */
    params += (double)cin * desc->head_channels + 2.0 * desc->head_channels +
              (double)desc->head_channels * classes + classes;
    bn_channels += desc->head_channels;
    /* params and grads; stats; the batch statistics of every BN for NET_MAX_BN_GROUPS */
    floats += 2 * params + 2 * bn_channels + 2 * bn_channels * NET_MAX_BN_GROUPS;
    *param_count = params;
    return floats * sizeof(float);
}

double mem_net_bytes(const struct net_desc *desc, int batch, int side, int in_channels,
                     int classes, int fixed)
{
    double params;
    return net_estimate(desc, batch, side, in_channels, classes, fixed, &params);
}

int mem_check_job(const struct job *job, int batch, int in_channels, int classes, int fixed,
                  double data_bytes, int batches)
{
    int side = job->data_resize;
    double params;
    double net = net_estimate(&job->net, batch, side, in_channels, classes, fixed, &params);
    net += params * sizeof(float); /* the SGD momentum */
    double inputs = (double)batches * batch * ((double)side * side * in_channels * sizeof(float) + 2);
    double total = net + inputs + data_bytes;
    char why[64], a[32], b[32], c[32], d[32], have[32];
    double limit = mem_limit_bytes(why, sizeof why);
    if (total <= limit)
        return 0;
    return offnas_error("train.batch: the job needs about %s of memory (a batch of %d images of "
                        "%dx%dx%d per trainer: network %s, input batches %s, data %s), more "
                        "than the %s this machine allows (%s); lower train.batch or data.resize",
                        mem_format(a, sizeof a, total), batch, side, side, in_channels,
                        mem_format(b, sizeof b, net), mem_format(c, sizeof c, inputs),
                        mem_format(d, sizeof d, data_bytes), mem_format(have, sizeof have, limit),
                        why);
}
