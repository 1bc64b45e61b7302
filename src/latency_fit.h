/* latency_fit: latency tables for devices that cannot run offnas (a phone), from a cost model
 * fitted to published per-block measurements: the CSV reader of `offnas profile fit`, the
 * non-negative least-squares fit and its evaluation for every (slot, op) of a search space.
 *
 * The model, fitted to the device's measured MBConv blocks (CSV of ../shared/data/latency/,
 * rows op_type conv with se 0): block ms = a * pointwise MACs + b * depthwise MACs + c *
 * activation bytes + d, least squares with non-negative coefficients, fitted on the rows whose
 * index (in file order) is not 4 mod 5 and evaluated on the others. The stem is fitted on
 * the firstconv rows (ms = s0 * MACs + s1); the head uses the block model (a on its pointwise
 * and linear MACs); skip is 0.
 */
#ifndef OFFNAS_LATENCY_FIT_H
#define OFFNAS_LATENCY_FIT_H

#include "latency.h"
#include "net.h"

/* The terms of the block model, the order of latency_fit.coef and of block features. */
enum { LATENCY_FIT_PW, LATENCY_FIT_DW, LATENCY_FIT_BYTES, LATENCY_FIT_BIAS, LATENCY_FIT_TERMS };

struct latency_fit {
    char device[64];                /* device column of the CSV */
    char source[256];               /* "fit: <csv path>" */
    double coef[LATENCY_FIT_TERMS]; /* ms per pointwise MAC, depthwise MAC, activation byte; ms */
    double stem_coef[2];            /* ms per stem MAC; ms */
    int train_rows, test_rows, stem_rows;
    double mape;    /* held-out mean absolute percentage error, percent */
    double rmse_ms; /* held-out root mean square error, ms */
};

/* Features of one inverted residual block (NHWC: 1x1 expand if expand > 1, kernel x kernel
 * depthwise with the given output side, 1x1 project) in the order of LATENCY_FIT_*: pointwise
 * MACs, depthwise MACs, fp32 bytes of every tensor each conv reads and writes, 1. */
void latency_block_features(double f[LATENCY_FIT_TERMS], int hin, int hout, int cin, int cout,
                            int expand, int kernel);

/* Parses the CSV at path (header with at least the columns device, op_type, input_h,
 * in_channels, out_channels, expand_ratio, kernel, stride, se, latency_ms) and fits the model.
 * Every latency_ms must be in (0, CHECK_MAX_LATENCY_MS], the held-out errors finite and
 * within what latency_load accepts. Returns 0, or -1 with an error naming the file (and line,
 * for a malformed line) and the column. */
int latency_fit_csv(struct latency_fit *fit, const char *path);

/* Fills table (already latency_table_init'ed for net) from the fit: every (slot, op) gets the
 * model's milliseconds times scale as median, p10 and p90, repeats 0; source, cpu and the fit
 * errors come from fit. Returns 0, or -1 with an error naming the CSV when an entry would not
 * be a number of ms in [0, CHECK_MAX_LATENCY_MS] (latency_load would refuse the table). */
int latency_fit_table(struct latency_table *table, const struct latency_fit *fit,
                       const struct net *net, double scale);


#endif
