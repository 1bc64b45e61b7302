/* fuzz_profile_csv: the CSV of `offnas profile fit` (published per-block latencies). The
 * input is the file, parsed and fitted by latency_fit_csv; a fit that succeeds is evaluated
 * for every (slot, op) of the tiny run's search space by latency_fit_table. */
#include "fuzz_lib.h"

#include "job.h"
#include "latency_fit.h"

#include <stdlib.h>

/* The tiny run's supernet and a table for it, built on first use and kept (not a leak: they
 * stay reachable). */
static struct net *space;
static struct latency_table *table;

static void build_space(void)
{
    struct job *job = malloc(sizeof *job);
    if (!job || job_load_text(job, FUZZ_TINY_JOB, fuzz_dir(), "tiny.ini"))
        abort();
    space = net_create(&job->net, 1, job->data_resize, 1, 10, 0, 1);
    table = malloc(sizeof *table);
    if (!space || !table)
        abort();
    free(job);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    if (!space)
        build_space();
    const char *path = fuzz_write_file("latency.csv", data, size);
    struct latency_fit fit;
    if (fuzz_step("latency_fit_csv", latency_fit_csv(&fit, path)) == 0) {
        latency_table_init(table, space, fit.device);
        latency_fit_table(table, &fit, space, 1.0);
    }
    return 0;
}
