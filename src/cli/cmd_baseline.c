/* cmd_baseline: `offnas baseline neurosurgeon | nas-then-split | prune-split`: the networks the
 * search is measured against, each into a run folder that `offnas report` reads. */
#include "baseline.h"
#include "cmd.h"
#include "common.h"

#include <stdio.h>
#include <string.h>

static const char BASELINE_USAGE[] =
    "usage: offnas baseline neurosurgeon|nas-then-split|prune-split --job FILE --out DIR\n"
    "                       [--set SECTION.KEY=VALUE ...]\n"
    "\n"
    "Builds, trains (the job's [train] budget) and evaluates a baseline on the job's tables\n"
    "and link, ending with the files of search -> derive -> train --arch -> eval in DIR\n"
    "(arch.json with \"method\", model.h5, log.csv, summary.json):\n"
    "  neurosurgeon    the fixed network (net.ops), its fastest split, every channel sent;\n"
    "                  its all-device and all-edge figures are the two trivial baselines\n"
    "  nas-then-split  the supernet searched for the device alone (search.split=device),\n"
    "                  derived, then its fastest split with every channel sent\n"
    "  prune-split     the fixed network trained, the channels at each split pruned by\n"
    "                  batch-norm scale to the fewest within derive.max_accuracy_drop, the\n"
    "                  fastest split, fine-tuned baseline.finetune_epochs with that mask\n"
    "Then: offnas report --out R DIR ...\n";

int cmd_baseline(int argc, char **argv)
{
    struct cmd_job_options opts = {0};
    const char *out = NULL;
    const struct cmd_option options[] = {{"--out", CMD_STRING, &out, 0, 0}};
    if (argc < 2 || argv[1][0] == '-') {
        int status = cmd_parse(argc, argv, "baseline", BASELINE_USAGE, &opts, options, 1);
        return status == CMD_CONTINUE ? cmd_usage_error("baseline: name a method "
                                                        "(neurosurgeon, nas-then-split, "
                                                        "prune-split)")
                                      : status;
    }
    int method = baseline_parse(argv[1]);
    if (method < 0)
        return cmd_usage_error("baseline: unknown method '%s' (neurosurgeon, nas-then-split, "
                               "prune-split)",
                               argv[1]);
    int status = cmd_parse(argc - 1, argv + 1, "baseline", BASELINE_USAGE, &opts, options, 1);
    if (status != CMD_CONTINUE)
        return status;
    if (!out)
        return cmd_usage_error("baseline: --out DIR is required");
    struct job job;
    if (cmd_load_job(&job, &opts))
        return 1;
    struct eval_result r;
    if (baseline_run((enum baseline_method)method, &job, out, &r)) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    printf("%s: test_accuracy %.4f, split %d, %d of %d channels, predicted %.3f ms (device "
           "%.3f, transfer %.3f, edge %.3f); all on device %.3f, all on edge %.3f\nsummary: %s\n",
           BASELINE_NAMES[method], r.test_accuracy, r.split, r.kept, r.total, r.latency.total,
           r.latency.device, r.latency.transfer, r.latency.edge, r.all_device.total,
           r.all_edge.total, r.path);
    return 0;
}
