/* cmd_eval: `offnas eval`: test accuracy of a retrained derived network and the predicted
 * latency of its split, into RUN/summary.json. */
#include "arch.h"
#include "cmd.h"
#include "common.h"
#include "derived.h"
#include "latency.h"
#include "op.h"
#include "search.h"
#include "train.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char EVAL_USAGE[] =
    "usage: offnas eval --run DIR [--network NAME] [--set SECTION.KEY=VALUE ...]\n"
    "\n"
    "Evaluates a derived network trained by `offnas train --arch`: test accuracy, and the\n"
    "predicted latency of its split (device, transfer, edge) beside the same network all on the\n"
    "device and all on the edge, on the job's network or NAME (3g, lte, wifi, 5g). Writes\n"
    "DIR/summary.json.\n";

int cmd_eval(int argc, char **argv)
{
    struct cmd_job_options opts = {0};
    const char *run = NULL, *network = NULL;
    const struct cmd_option options[] = {{"--run", CMD_STRING, &run, 0, 0},
                                         {"--network", CMD_STRING, &network, 0, 0}};
    int status = cmd_parse(argc, argv, "eval", EVAL_USAGE, &opts, options, 2);
    if (status != CMD_CONTINUE)
        return status;
    if (!run)
        return cmd_usage_error("eval: --run DIR is required");
    char path[JOB_PATH_MAX * 2], set[64];
    if (network) {
        snprintf(set, sizeof set, "network.preset=%s", network);
        if (opts.set_count >= (int)OFFNAS_ARRAY_LEN(opts.sets))
            return cmd_usage_error("eval: too many --set options");
        opts.sets[opts.set_count++] = set;
    }
    struct derived d;
    struct job job;
    struct net *fixed = NULL, *super = NULL;
    struct latency_table *tables = offnas_calloc(2, sizeof *tables);
    struct train_data td = {0};
    struct arch arch = {0};
    json_t *summary = NULL;
    int rc = 1;
    snprintf(path, sizeof path, "%s/arch.json", run);
    if (derived_load(&d, path) || derived_job(&job, &d, run, opts.sets, opts.set_count))
        goto done;
    op_set_threads(job.train_threads);
    if (train_data_load(&td, &job, NULL))
        goto done;
    fixed = net_create(&job.net, 256, job.data_resize, td.test.channels, td.test.classes, 1, 1);
    super = net_create(&job.net, 1, job.data_resize, td.test.channels, td.test.classes, 0, 1);
    if (!fixed || !super)
        goto done;
    snprintf(path, sizeof path, "%s/model.h5", run);
    if (train_load_model(fixed, path))
        goto done;
    double accuracy;
    train_evaluate(fixed, &td.test, job.data_resize, &accuracy, NULL);
    if (latency_load(&tables[0], d.lut_device, super) || latency_load(&tables[1], d.lut_edge, super))
        goto done;
    arch_init(&arch, super, 0.0f);
    struct arch_cost cost;
    if (search_cost_init(&cost, &job, &tables[0], &tables[1]))
        goto done;
    int ops[NET_MAX_LAYERS], L = super->layer_count;
    for (int l = 0; l < L; l++) {
        ops[l] = net_find_candidate(super, l, &job.net.fixed_ops[l]);
        if (ops[l] < 0) {
            offnas_error("%s: op %d is not a candidate of the search space", run, l + 1);
            goto done;
        }
    }
    int split = d.split.split, total = split >= 1 && split <= L ? arch.channels[split] : 0;
    int kept = total ? d.split.kept : 0;
    struct arch_latency lat = arch_network_latency(&arch, &cost, ops, split, kept);
    struct arch_latency dev = arch_network_latency(&arch, &cost, ops, L + 1, 0);
    struct arch_latency edge = arch_network_latency(&arch, &cost, ops, 0, 0);
    double bytes = arch_bytes_sent(&arch, &cost, split, kept);

    snprintf(path, sizeof path, "%s/summary.json", run);
    json_error_t err;
    summary = json_load_file(path, 0, &err);
    if (!summary)
        summary = json_object();
    json_object_set_new(summary, "test_accuracy", json_real(accuracy));
    json_object_set_new(summary, "split_point", json_integer(split));
    json_object_set_new(summary, "kept_channels", json_integer(kept));
    json_object_set_new(summary, "total_channels", json_integer(total));
    json_object_set_new(summary, "bytes_sent", json_real(bytes));
    json_object_set_new(summary, "wire", json_string(job.search_wire));
    json_t *ms = cmd_latency_json(&lat);
    json_object_set_new(ms, "all_device", json_real(dev.total));
    json_object_set_new(ms, "all_edge", json_real(edge.total));
    json_object_set_new(summary, "latency_ms", ms);
    json_t *net = json_object();
    json_object_set_new(net, "name", json_string(cost.link.name));
    json_object_set_new(net, "bandwidth_mbps", json_real(cost.link.bandwidth_mbps));
    json_object_set_new(net, "rtt_ms", json_real(cost.link.rtt_ms));
    json_object_set_new(summary, "network", net);
    json_object_set_new(summary, "device_profile", json_string(tables[0].device));
    json_object_set_new(summary, "edge_profile", json_string(tables[1].device));
    json_object_set_new(summary, "device_scale", json_real(job.latency_device_scale));
    json_object_set_new(summary, "edge_scale", json_real(job.latency_edge_scale));
    json_object_set_new(summary, "input_side", json_integer(job.data_resize));
    json_object_set_new(summary, "ops", json_string(job.net_ops));
    if (train_write_json(summary, path))
        goto done;
    printf("test_accuracy: %.4f\nsplit_point: %d\nkept_channels: %d of %d\nbytes_sent: %.0f\n"
           "latency_ms: total %.3f (device %.3f, transfer %.3f, edge %.3f); all on device %.3f, "
           "all on edge %.3f (%s)\nsummary: %s\n",
           accuracy, split, kept, total, bytes, lat.total, lat.device, lat.transfer, lat.edge,
           dev.total, edge.total, cost.link.name, path);
    rc = 0;
done:
    if (rc)
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
    json_decref(summary);
    json_decref(d.root);
    arch_free(&arch);
    net_free(fixed);
    net_free(super);
    free(tables);
    train_data_free(&td);
    return rc;
}
