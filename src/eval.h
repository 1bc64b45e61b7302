/* eval: the figures of a retrained derived network (a run folder of `offnas train --arch` or of
 * a baseline): test accuracy of its model.h5 and the predicted latency of its split on the
 * tables its arch.json names, beside the same network all on the device and all on the edge.
 * They go into the folder's summary.json, which `offnas report` reads. */
#ifndef OFFNAS_EVAL_H
#define OFFNAS_EVAL_H

#include "arch.h"
#include "data.h"
#include "derived.h"
#include "job.h"
#include "latency.h"
#include "net.h"

/* What a run folder's prediction needs: arch.json, the derived job, the search space, the
 * two tables and the link (the trained weights are the caller's, in a net of its batch). */
struct eval_model {
    struct derived d;
    struct job job;
    struct net *super; /* the search space (batch 1, no weights used) */
    int channels, classes; /* of the input, from the data file's first image */
    struct latency_table tables[2];
    struct arch arch;
    struct arch_cost cost;
    int ops[NET_MAX_LAYERS]; /* the derived ops as candidates of the search space */
    int has_tables;          /* tables, cost and link are loaded */
};

/* Opens run/arch.json with the overrides sets[0..n) on its job, and the tables it names or
 * lut_device / lut_edge (NULL: arch.json's; lut_device EVAL_NO_TABLES: none, has_tables 0,
 * for who only runs the network). Returns 0 or -1 with an error naming the file; close with
 * eval_model_close either way. */
extern const char EVAL_NO_TABLES[]; /* a unique address, compared as a pointer */
int eval_model_open(struct eval_model *m, const char *run, const char *const *sets, int n,
                    const char *lut_device, const char *lut_edge);
void eval_model_close(struct eval_model *m);

/* Whether data set ds (of the job's data file) has the model's input channels and classes:
 * 0, or -1 with an error naming the data file. */
int eval_model_check_data(const struct eval_model *m, const struct dataset *ds);

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
