/* cmd_eval: `offnas eval`: test accuracy of a retrained derived network and the predicted
 * latency of its split, into RUN/summary.json. */
#include "cmd.h"
#include "common.h"
#include "eval.h"

#include <stdio.h>

static const char EVAL_USAGE[] =
    "usage: offnas eval --run DIR [--network NAME] [--set SECTION.KEY=VALUE ...]\n"
    "\n"
    "Evaluates a derived network trained by `offnas train --arch` (or a baseline): test\n"
    "accuracy, and the predicted latency of its split (device, transfer, edge) beside the same\n"
    "network all on the device and all on the edge, on the job's network or NAME (3g, lte,\n"
    "wifi, 5g). Writes DIR/summary.json (read by offnas report).\n";

int cmd_eval(int argc, char **argv)
{
    struct cmd_job_options opts = {0};
    const char *run = NULL, *network = NULL;
    const struct cmd_option options[] = {{"--run", CMD_NEEDED, &run, 0, 0},
                                         {"--network", CMD_STRING, &network, 0, 0}};
    int status = cmd_parse(argc, argv, "eval", EVAL_USAGE, &opts, options, 2);
    if (status != CMD_CONTINUE)
        return status;
    char set[64];
    if (network) {
        snprintf(set, sizeof set, "network.preset=%s", network);
        if (opts.set_count >= (int)OFFNAS_ARRAY_LEN(opts.sets))
            return cmd_usage_error("eval: too many --set options");
        opts.sets[opts.set_count++] = set;
    }
    struct eval_result r;
    if (eval_run(run, opts.sets, opts.set_count, &r)) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    printf("test_accuracy: %.4f\nsplit_point: %d\nkept_channels: %d of %d\nbytes_sent: %.0f\n"
           "latency_ms: total %.3f (device %.3f, transfer %.3f, edge %.3f); all on device %.3f, "
           "all on edge %.3f (%s)\nsummary: %s\n",
           r.test_accuracy, r.split, r.kept, r.total, r.bytes_sent, r.latency.total,
           r.latency.device, r.latency.transfer, r.latency.edge, r.all_device.total,
           r.all_edge.total, r.network, r.path);
    return 0;
}
