/* cmd_train: `offnas train`: the fixed network of a job, or (--arch) the derived network of a
 * search with its split and channel mask. */
#include "cmd.h"
#include "common.h"
#include "derived.h"
#include "dist.h"
#include "search.h"
#include "net.h"
#include "op.h"
#include "optim.h"
#include "rng.h"
#include "train.h"

#include <stdlib.h>
#include <string.h>

static const char TRAIN_USAGE[] =
    "usage: offnas train --job FILE --out DIR [--set SECTION.KEY=VALUE ...]\n"
    "       offnas train --arch RUN/arch.json --out DIR [--set SECTION.KEY=VALUE ...]\n"
    "\n"
    "Trains the fixed network of the job ([net] layers and ops) on the training split, reports\n"
    "validation and test accuracy, and writes DIR/summary.json, DIR/log.csv and DIR/model.h5.\n"
    "\n"
    "  --job FILE     job file (INI); without it the defaults are used\n"
    "  --set K=V      override a job key, e.g. --set train.epochs=2 (repeatable)\n"
    "  --arch FILE    retrain a derived network (arch.json of `offnas derive`) with its split\n"
    "                 and channel mask; the job is the search's, with net.ops from the file\n"
    "  --out DIR      run folder (created)\n";

int cmd_train(int argc, char **argv)
{
    struct cmd_job_options opts = {0};
    const char *out = NULL, *arch = NULL;
    const struct cmd_option options[] = {{"--out", CMD_NEEDED, &out, 0, 0},
                                         {"--arch", CMD_STRING, &arch, 0, 0}};
    int status = cmd_parse(argc, argv, "train", TRAIN_USAGE, &opts, options, 2);
    if (status != CMD_CONTINUE)
        return status;
    if (arch) {
        if (opts.job_path)
            return cmd_usage_error("train: --arch takes its job from arch.json; use --set");
        return cmd_train_arch(arch, out, &opts);
    }
    struct job job;
    if (cmd_load_job(&job, &opts))
        return 1;
    status = cmd_join_ranks(&job, NULL, 0);
    if (status != CMD_CONTINUE)
        return status;
    struct train_result r;
    if (train_fixed(&job, NULL, out, &r)) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    if (dist_get()->rank == 0)
        printf("test_accuracy: %.4f\nval_accuracy: %.4f\ntrain_seconds: %.1f\nimages_per_second: %.1f\n"
           "summary: %s/summary.json\n",
           r.test_accuracy, r.val_accuracy, r.train_seconds, r.images_per_second, out);
    return 0;
}

/* offnas train --arch FILE --out DIR */
int cmd_train_arch(const char *arch_path, const char *out, const struct cmd_job_options *opts)
{
    struct derived d;
    struct job job;
    struct train_result r;
    int rc = derived_load(&d, arch_path);
    if (!rc)
        rc = train_mkdirs(out);
    if (!rc)
        rc = derived_job(&job, &d, out, opts->sets, opts->set_count);
    if (!rc) {
        char path[JOB_PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/arch.json", out);
        rc = train_write_json(d.root, path);
    }
    int status = rc ? CMD_CONTINUE : cmd_join_ranks(&job, NULL, 0);
    if (status != CMD_CONTINUE) {
        json_decref(d.root);
        return status;
    }
    if (!rc)
        rc = train_fixed(&job, &d.split, out, &r);
    json_decref(d.root);
    if (rc) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    if (dist_get()->rank == 0)
        printf("test_accuracy: %.4f\nval_accuracy: %.4f\ntrain_seconds: %.1f\nnext: offnas eval --run "
           "%s\n",
           r.test_accuracy, r.val_accuracy, r.train_seconds, out);
    return 0;
}
