/* latency: per-device latency lookup tables (LUTs): their shape, the search-space fingerprint
 * that ties a table to its space, and their HDF5 files. Tables are filled by measuring
 * (latency_measure.h) or from a fitted cost model (latency_fit.h).
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

#include <stdint.h>

#define LATENCY_MAX_SLOTS (NET_MAX_LAYERS + 2)
#define LATENCY_SPACE_MAX 4096 /* longest canonical search-space text */
#define LATENCY_MAX_THREADS 4096 /* threads attribute of a table */
#define LATENCY_MAX_FIT_MAPE 1e6 /* held-out error of a fit, percent: above, no model */

/* A partition the profiler ranks measured for real over TCP (src/runtime/probe.h), carried by
 * the mobile profiler's corrected table to the trainers. Not saved in profile files. */
struct latency_probe {
    int present;           /* 0: none (the other fields are 0) */
    int split, kept;       /* the partition: an inner split and its channels sent */
    double measured[3];    /* device, transfer, edge ms: medians */
    double predicted[3];   /* the same from the tables and link in use before */
    int link_fitted;       /* bandwidth and rtt fitted from the transfers */
    double bandwidth_mbps, rtt_ms;
};

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
    double median[LATENCY_MAX_SLOTS][NET_MAX_CANDIDATES];
    double p10[LATENCY_MAX_SLOTS][NET_MAX_CANDIDATES];
    double p90[LATENCY_MAX_SLOTS][NET_MAX_CANDIDATES];
    int repeats[LATENCY_MAX_SLOTS][NET_MAX_CANDIDATES];
    double fit_mape;    /* held-out error of a fitted table, percent; -1: not a fit */
    double fit_rmse_ms; /* held-out root mean square error of a fitted table; -1: not a fit */
    char space[LATENCY_SPACE_MAX]; /* canonical text the fingerprint hashes */
    struct latency_probe probe;    /* a measured partition (profiler messages only) */
};

/* Canonical text of the search space of net (input side and channels, stem width and stride
 * (the stride only when not 1), layers, the candidate names of every layer, head, classes)
 * into buf, and its 64-bit FNV-1a hash. */
uint64_t latency_fingerprint(const struct net *net, char *buf, size_t size);

/* Fills table's shape (slot_count, op_count) and fingerprint for net; entries are zeroed. */
void latency_table_init(struct latency_table *table, const struct net *net, const char *device);

/* The table's milliseconds for one network: stem + ops[l] of every layer + head, unscaled. */
double latency_network_ms(const struct latency_table *t, int layers, const int *ops);

/* Saves and loads a table (HDF5, tmp + rename). latency_load checks the file against net:
 * wrong fingerprint, string attributes longer than their field, threads, version and
 * slot_count out of range, data sets of another type, rank or length, an entry outside the
 * space, twice or missing, a time that is not a number of ms in [0, CHECK_MAX_LATENCY_MS],
 * negative repeats, fit errors not in [0, LATENCY_MAX_FIT_MAPE] percent and
 * [0, CHECK_MAX_LATENCY_MS] ms. Each is refused with "FILE: FIELD: what is wrong".
 * latency_save refuses (writing nothing) a table latency_load would refuse. Return 0 or -1. */
int latency_save(const struct latency_table *table, const char *path);
int latency_load(struct latency_table *table, const char *path, const struct net *net);

/* Refuses (as latency_load does) a fingerprint have that is not the one of net's space:
 * "NAME: made for another search space (fingerprint …, this job …)". Returns 0 or -1. */
int latency_check_fingerprint(const char *name, uint64_t have, const struct net *net);

/* The checks latency_load applies, for a table that arrived otherwise (a profiler rank's
 * message, latency_wire.h): the fingerprint and space text of net's space, its shape
 * (slot_count, op_count of every slot), then threads, version, fit errors and every entry as
 * latency_save checks them. name starts the message ("NAME: FIELD: what is wrong").
 * Returns 0 or -1 with an error. */
int latency_check_received(const struct latency_table *t, const struct net *net,
                           const char *name);

/* Milliseconds of one entry times scale. */
static inline double latency_ms(const struct latency_table *t, int slot, int op, double scale)
{
    return t->median[slot][op] * scale;
}

#endif
