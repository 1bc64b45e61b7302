/* timing: warm-up, timed runs and their quantiles (see timing.h). */
#include "timing.h"

#include "common.h"

#include <stdlib.h>

/* q-quantile of sorted[0..n) with linear interpolation between neighbours. */
static double quantile(const double *sorted, int n, double q)
{
    double pos = q * (n - 1);
    int lo = (int)pos;
    if (lo >= n - 1)
        return sorted[n - 1];
    return sorted[lo] + (pos - lo) * (sorted[lo + 1] - sorted[lo]);
}

struct timing timing_of_samples(double *samples, int n)
{
    OFFNAS_ASSERT(n >= 1);
    qsort(samples, (size_t)n, sizeof *samples, offnas_compare_double);
    double mean = 0;
    for (int i = 0; i < n; i++)
        mean += samples[i];
    mean /= n;
    return (struct timing){
        .min = samples[0],
        .p10 = quantile(samples, n, 0.1),
        .median = quantile(samples, n, 0.5),
        .p90 = quantile(samples, n, 0.9),
        .p99 = quantile(samples, n, 0.99),
        .max = samples[n - 1],
        .mean = mean,
        .repeats = n,
    };
}

struct timing timing_run(void (*run)(void *ctx), void *ctx, int warmup, int repeats)
{
    OFFNAS_ASSERT(repeats >= 1 && warmup >= 0);
    for (int r = 0; r < warmup; r++)
        run(ctx);
    double *samples = offnas_malloc((size_t)repeats * sizeof *samples);
    for (int r = 0; r < repeats; r++) {
        double start = offnas_now();
        run(ctx);
        samples[r] = (offnas_now() - start) * 1e3;
    }
    struct timing t = timing_of_samples(samples, repeats);
    free(samples);
    return t;
}
