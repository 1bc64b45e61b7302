/* fuzz_h5_load: the HDF5 loaders. The input is one HDF5 file, given to every loader in turn:
 * latency_load (a latency table), search_checkpoint_job and search_load_checkpoint (a search
 * checkpoint, with momentum and tables), train_load_model (model.h5), data_rows and data_load
 * (a data file, both splits). The nets are the tiny run's (FUZZ_TINY_JOB), whose files are the
 * seeds, so a mutated seed gets past the size checks. */
#include "fuzz_lib.h"

#include "arch.h"
#include "data.h"
#include "job.h"
#include "latency.h"
#include "search.h"
#include "train.h"

#include <stdlib.h>

/* The tiny run's supernet (with its architecture parameters) and fixed net, built on first
 * use and kept (reachable, not a leak); loaders overwrite their contents, never their shape. */
static struct net *supernet, *fixed;
static struct arch arch;
static float *momentum;
static struct latency_table *tables; /* latency_load's, then the checkpoint's two */

static void build_nets(void)
{
    struct job *job = malloc(sizeof *job);
    if (!job || job_load_text(job, FUZZ_TINY_JOB, fuzz_dir(), "tiny.ini"))
        abort();
    supernet = net_create(&job->net, 1, job->data_resize, 1, 10, 0, 1);
    fixed = net_create(&job->net, 1, job->data_resize, 1, 10, 1, 1);
    if (!supernet || !fixed)
        abort();
    arch_init(&arch, supernet, 0.0f);
    momentum = calloc(supernet->param_count, sizeof *momentum);
    tables = calloc(2, sizeof *tables);
    if (!momentum || !tables)
        abort();
    free(job);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    if (!supernet)
        build_nets();
    const char *path = fuzz_write_file("input.h5", data, size);

    fuzz_step("latency_load", latency_load(&tables[0], path, supernet));

    char *job_text = search_checkpoint_job(path);
    fuzz_step("search_checkpoint_job", !job_text);
    free(job_text);
    struct search_state state = {.momentum = momentum, .tables = tables};
    fuzz_step("search_load_checkpoint", search_load_checkpoint(path, supernet, &arch, &state));

    fuzz_step("train_load_model", train_load_model(fixed, path));

    static const char *const splits[] = {"train", "test"};
    for (int i = 0; i < 2; i++) {
        long rows = 0;
        fuzz_step("data_rows", data_rows(path, splits[i], &rows));
        struct dataset ds = {0};
        fuzz_step("data_load", data_load(&ds, path, splits[i], 0, 0));
        data_free(&ds);
    }
    return 0;
}
