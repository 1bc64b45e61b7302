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
    "                  (baseline.pin_split and pin_kept: that split and channel count)\n"
    "Then: offnas report --out R DIR ...\n";

int cmd_baseline(int argc, char **argv)
{
    const char *out = NULL;
    const struct cmd_option options[] = {{"--out", CMD_NEEDED, &out, 0, 0}};
    int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    if (help)
        fputs(BASELINE_USAGE, stdout);
    if (help || argc < 2 || argv[1][0] == '-')
        return help ? 0 : cmd_usage_error("baseline: name a method first (neurosurgeon, "
                                          "nas-then-split, prune-split)");
    int method = baseline_parse(argv[1]);
    if (method < 0)
        return cmd_usage_error("baseline: unknown method '%s' (neurosurgeon, nas-then-split, "
                               "prune-split)",
                               argv[1]);
    struct job job;
    int status = cmd_parse_job(&job, argc - 1, argv + 1, "baseline", BASELINE_USAGE, options, 1);
    if (status != CMD_CONTINUE)
        return status;
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
