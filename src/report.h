/* report: runs side by side. Reads each run folder's summary.json (from `offnas eval` and the
 * baselines) into rows, marks the Pareto-optimal rows (test accuracy against predicted
 * end-to-end latency), picks the fastest row within REPORT_ACCURACY_TOLERANCE of the most
 * accurate one, and writes report.md, pareto.csv, report.json and the gnuplot script pareto.gp,
 * which report_plot runs for pareto.png and pareto.svg.
 *
 *     struct report rep;
 *     if (report_read(&rep, dirs, count) || report_write(&rep, "out", plot_drawn)) ...error
 *     report_free(&rep);
 */
#ifndef OFFNAS_REPORT_H
#define OFFNAS_REPORT_H

#include "arch.h"
#include "job.h"

#include <jansson.h>
#include <stdio.h>

/* The methods a summary.json may name in "method" (absent: REPORT_SEARCH). */
enum report_method {
    REPORT_SEARCH,
    REPORT_NEUROSURGEON,
    REPORT_NAS_THEN_SPLIT,
    REPORT_PRUNE_SPLIT,
    REPORT_ALL_DEVICE,
    REPORT_ALL_EDGE,
    REPORT_METHOD_COUNT
};

/* "search", "neurosurgeon", "nas-then-split", ... */
const char *report_method_name(enum report_method method);

#define REPORT_UNKNOWN (-1)        /* an integer field its summary did not give */
#define REPORT_ROWS_PER_RUN 3      /* a neurosurgeon run adds its all-device and all-edge rows */
#define REPORT_ACCURACY_TOLERANCE 0.005 /* 0.5 points: "as accurate" for the best-run rule */
#define REPORT_MAX_SEEDS 32       /* trainings of one run averaged: its own and RUN/seeds/<seed> */

/* One row of the report. Unknown numbers are NAN, unknown integers REPORT_UNKNOWN, unknown ops
 * "". latency_ms.total and test_accuracy are always known. A run retrained under other seeds
 * (RUN/seeds/<seed>/summary.json, the same network) has seed_count > 1 and test_accuracy is
 * the mean of seed_accuracy; otherwise seed_count is 0 or 1 and the seed fields are unused. */
struct report_row {
    enum report_method method;
    double lambda;
    char dir[JOB_PATH_MAX];   /* the run folder, as given */
    char ops[JOB_TEXT_MAX];   /* "k3e1, skip, ...": one op per layer */
    double test_accuracy;     /* fraction, 0..1 */
    int seed_count;           /* trainings averaged into test_accuracy */
    double seed_accuracy[REPORT_MAX_SEEDS]; /* the run's own, then its seeds in increasing order */
    double seed_spread;       /* highest minus lowest of seed_accuracy */
    int split_point, kept_channels, total_channels;
    double bytes_sent;
    struct arch_latency latency_ms;
    double macs, params;
    int pareto;               /* 1: no other row dominates it (report_mark_pareto) */
};

struct report {
    struct report_row *rows; /* owned; report_free */
    int count;
    int best;                /* index of report_best's row */
};

/* Reads DIR/summary.json (and DIR/arch.json when there) into rows, which has room for
 * REPORT_ROWS_PER_RUN: the run's own row, then for a neurosurgeon run its all-device and
 * all-edge rows. Every folder DIR/seeds/<seed> (a retraining of the same network under
 * train.seed <seed>) adds its summary.json's test accuracy to the mean; one that is not the
 * run's network (method, ops, split, channels) is an error. Returns the number of rows, or -1
 * with an error "FILE: FIELD: what is wrong". */
int report_read_run(const char *dir, struct report_row *rows);

/* Sets pareto on every row that no other row dominates (accuracy >= and total latency <=,
 * one of them strictly). Rows equal in both are all kept. */
void report_mark_pareto(struct report_row *rows, int count);

/* Of the rows within REPORT_ACCURACY_TOLERANCE of the highest test accuracy, the index of the
 * one with the lowest total latency (ties: higher accuracy, then the earlier row); -1 when
 * count is 0. */
int report_best(const struct report_row *rows, int count);

/* Reads every run of dirs[0..count) in order, marks the Pareto rows and picks the best. Returns
 * 0, or -1 with the error of the first bad run (r is then empty). Free with report_free. */
int report_read(struct report *r, const char *const *dirs, int count);

void report_free(struct report *r);

/* The markdown report: a table of every row, the best-run line and a line naming the plot
 * (plot_drawn 0: says it was not drawn). */
void report_write_md(const struct report *r, int plot_drawn, FILE *out);

/* pareto.csv: a header line, then one line per row (unknown values empty, pareto 1 or 0);
 * when a row has several seeds, two more columns: test_accuracy_seeds, test_accuracy_spread. */
void report_write_csv(const struct report *r, FILE *out);

/* One row as a JSON object: method, lambda, dir, ops, test_accuracy, split_point,
 * kept_channels, total_channels, bytes_sent, latency_ms{device, transfer, edge, total}, macs,
 * params, pareto; null for unknown values; a row of several seeds also test_accuracy_seeds and
 * test_accuracy_spread. New reference. */
json_t *report_row_json(const struct report_row *row);

/* report.json: {"runs": [row...], "best": row}. New reference. */
json_t *report_json(const struct report *r);

/* pareto.gp: the gnuplot script that draws base.png and base.svg (base: the variable `out`,
 * default out_dir/pareto) with the data inline. */
void report_write_gp(const struct report *r, const char *out_dir, FILE *out);

/* Creates out_dir (and its parents) and writes report.md, pareto.csv, report.json and
 * pareto.gp into it, each under a temporary name renamed into place once all four are
 * written. Returns 0, or -1 with an error naming the file (no file in out_dir changed). */
int report_write(const struct report *r, const char *out_dir, int plot_drawn);

/* Looks gnuplot up in PATH: 0 with its path in path_out, or -1 with the reason (an error). */
int report_find_gnuplot(char *path_out, size_t size);

/* Runs `gnuplot out_dir/pareto.gp` (gnuplot: its path) to temporary names and renames them to
 * out_dir/pareto.png and pareto.svg. Returns 0, or -1 with an error (gnuplot's exit status). */
int report_plot(const char *out_dir, const char *gnuplot);

#endif
