/* eval: the figures of a retrained derived network (a run folder of `offnas train --arch` or of
 * a baseline): test accuracy of its model.h5 and the predicted latency of its split on the
 * tables its arch.json names, beside the same network all on the device and all on the edge.
 * They go into the folder's summary.json, which `offnas report` reads. */
#ifndef OFFNAS_EVAL_H
#define OFFNAS_EVAL_H

#include "arch.h"

struct eval_result {
    double test_accuracy;
    int split, kept, total;
    double bytes_sent;
    struct arch_latency latency, all_device, all_edge;
    double macs;            /* per image, the derived network */
    long params;
    char network[32];       /* the link's name */
    char path[1100];        /* summary.json written */
};

/* Evaluates run folder `run` (arch.json, model.h5) with the overrides sets[0..set_count) on
 * its job (e.g. "network.preset=wifi"), and writes run/summary.json (keeping the fields
 * training wrote). Returns 0 or -1 with an error naming the file. */
int eval_run(const char *run, const char *const *sets, int set_count, struct eval_result *out);

#endif
