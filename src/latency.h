/* latency: per-device latency lookup tables (LUTs) and the network model.
 *
 * A table holds, for one device, the milliseconds of every (slot, op) of a search space at
 * batch 1: slot 0 is the stem, slots 1..L the searchable layers (op = candidate index of that
 * layer, in the order net_create gives them), slot L+1 the head (op 0). Each entry keeps the
 * median, p10, p90 and the number of repeats. A table is tied to its search space by a
 * fingerprint (latency_fingerprint), so a table made for another space is refused.
 *
 * On disk (HDF5, see profiles/README.md): root attributes device, host, cpu, threads, date,
 * source, fingerprint, space (the canonical text the fingerprint hashes), version; data sets
 * /slot, /op (int32 [R]), /median_ms, /p10_ms, /p90_ms (float64 [R]), /repeats (int32 [R]).
 */
#ifndef OFFNAS_LATENCY_H
#define OFFNAS_LATENCY_H

#include "job.h"
#include "net.h"
#include "timing.h"

#include <stdint.h>

#define LATENCY_MAX_SLOTS (JOB_MAX_LAYERS + 2)
#define LATENCY_SPACE_MAX 4096 /* longest canonical search-space text */

struct latency_table {
    char device[64];
    char host[128];
    char cpu[128];
    char date[32];
    char source[256];  /* "measured", or "fit: <csv file>" */
    int threads;
    int version;       /* bumped by every corrected table a profiler sends */
    uint64_t fingerprint;
    int slot_count;    /* L + 2 */
    int op_count[LATENCY_MAX_SLOTS];
    double median[LATENCY_MAX_SLOTS][JOB_MAX_CANDIDATES];
    double p10[LATENCY_MAX_SLOTS][JOB_MAX_CANDIDATES];
    double p90[LATENCY_MAX_SLOTS][JOB_MAX_CANDIDATES];
    int repeats[LATENCY_MAX_SLOTS][JOB_MAX_CANDIDATES];
    double fit_mape;    /* held-out error of a fitted table, percent; -1: not a fit */
    double fit_rmse_ms; /* held-out root mean square error of a fitted table; -1: not a fit */
    char space[LATENCY_SPACE_MAX]; /* canonical text the fingerprint hashes */
};

/* Canonical text of the search space of net (input side and channels, stem width and stride
 * (the stride only when not 1), layers, the candidate names of every layer, head, classes)
 * into buf, and its 64-bit FNV-1a hash. */
uint64_t latency_fingerprint(const struct net *net, char *buf, size_t size);

/* Fills table's shape (slot_count, op_count) and fingerprint for net; entries are zeroed. */
void latency_table_init(struct latency_table *table, const struct net *net, const char *device);

/* Marks table as measured here: host name, CPU model (/proc/cpuinfo), UTC date, threads. */
void latency_stamp_here(struct latency_table *table, int threads);
/* Current UTC time as 2026-11-27T17:20:00Z. */
void latency_now_iso8601(char *buf, size_t size);

/* Measures every (slot, op) of net on this machine at batch 1 (net must have been created with
 * batch >= 1): warmup runs, then repeats timed runs; median, p10, p90. Eval mode. Prints a
 * progress line per layer through offnas_log. */
void latency_measure(struct latency_table *table, struct net *net, int warmup, int repeats);

/* Timing (timing.h) of warmup + repeats batch-1 forwards of net with its current choices
 * (eval mode; x holds one input image). */
struct timing latency_forward_timing(struct net *net, const float *x, int warmup, int repeats);

/* The table's milliseconds for one network: stem + ops[l] of every layer + head, unscaled. */
double latency_network_ms(const struct latency_table *t, int layers, const int *ops);

/* Saves and loads a table (HDF5, tmp + rename). latency_load checks the file against net:
 * wrong fingerprint, a missing (slot, op) entry, or a NaN/negative value are refused with an
 * error naming the file and the problem. Returns 0 or -1. */
int latency_save(const struct latency_table *table, const char *path);
int latency_load(struct latency_table *table, const char *path, const struct net *net);

/* Milliseconds of one entry times scale. */
static inline double latency_ms(const struct latency_table *t, int slot, int op, double scale)
{
    return t->median[slot][op] * scale;
}

/* The network between device and edge: T_net(bytes) = rtt_ms + 8 * bytes / bandwidth. */
struct latency_link {
    char name[16];
    double bandwidth_mbps; /* uplink, megabits per second */
    double rtt_ms;
};

/* Fills link from network.preset (3g, lte, wifi, 5g) or the custom bandwidth and RTT keys.
 * Returns 0 or -1 with an error naming the key. */
int latency_link_from_job(struct latency_link *link, const struct job *job);

/* Transfer time of bytes over link in milliseconds. */
static inline double latency_transfer_ms(const struct latency_link *link, double bytes)
{
    return link->rtt_ms + 8.0 * bytes / (link->bandwidth_mbps * 1e3);
}

/* Bytes per value of the wire format (fp32 4, fp16 2, int8 1); -1 with an error otherwise. */
int latency_wire_bytes(const char *wire);

/* ---- a cost model fitted to published per-block measurements (`offnas profile fit`) -------
 *
 * For a device that cannot run offnas (a phone), a table is evaluated from a linear model
 * fitted to its measured MBConv blocks (CSV of ../shared/data/latency/, rows op_type conv with
 * se 0): block ms = a * pointwise MACs + b * depthwise MACs + c * activation bytes + d, least
 * squares with non-negative coefficients, fitted on the rows whose index (in file order) is not
 * 4 mod 5 and evaluated on the others. The stem is fitted on the firstconv rows (ms = s0 *
 * MACs + s1); the head uses the block model (a on its pointwise and linear MACs); skip is 0. */
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
 * Returns 0, or -1 with an error naming the file (and line, for a malformed line). */
int latency_fit_csv(struct latency_fit *fit, const char *path);

/* Fills table (already latency_table_init'ed for net) from the fit: every (slot, op) gets the
 * model's milliseconds times scale as median, p10 and p90, repeats 0; source, cpu and the fit
 * errors come from fit. */
void latency_fit_table(struct latency_table *table, const struct latency_fit *fit,
                       const struct net *net, double scale);

#endif
