/* latency_measure: measuring this machine. Every (slot, op) of a search space timed at batch 1
 * into a latency table (`offnas profile`, the profiler ranks, a search without a profile), the
 * end-to-end forward of one network, and the stamp (host, CPU, date) of a measured table.
 */
#ifndef OFFNAS_LATENCY_MEASURE_H
#define OFFNAS_LATENCY_MEASURE_H

#include "latency.h"
#include "net.h"
#include "timing.h"

#include <stddef.h>

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


#endif
