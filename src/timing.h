/* timing: the one timing loop of offnas. A piece of work runs untimed a few times (warm-up),
 * then is timed run by run; the runs are summarised as min, p10, median, p90 and max
 * milliseconds. Latency tables, `offnas bench infer` and the profiler ranks all time this way.
 *
 *     struct timing t = timing_run(forward_once, &ctx, 10, 50);   // t.median is in ms
 */
#ifndef OFFNAS_TIMING_H
#define OFFNAS_TIMING_H

struct timing {
    double min, p10, median, p90, p99, max; /* milliseconds */
    double mean;
    int repeats;                       /* timed runs summarised */
};

/* Sorts samples[0..n) (n >= 1, milliseconds) ascending and returns their summary; quantiles
 * interpolate linearly between neighbouring samples (the median of 4 is the mean of the
 * middle two). */
struct timing timing_of_samples(double *samples, int n);

/* Calls run(ctx) warmup times untimed, then repeats (>= 1) times each timed on the monotonic
 * clock, and returns the summary of the timed runs. */
struct timing timing_run(void (*run)(void *ctx), void *ctx, int warmup, int repeats);

#endif
