/* cmd_derive: `offnas derive`: fixes the choices of a search into RUN/arch.json. */
#include "arch.h"
#include "cmd.h"
#include "common.h"
#include "latency.h"
#include "op.h"
#include "search.h"
#include "train.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char DERIVE_USAGE[] =
    "usage: offnas derive --run DIR\n"
    "\n"
    "Fixes the choices of a search: the most likely op per layer, the most likely split, and\n"
    "the channels with keep probability > 0.5 at that split. Writes DIR/arch.json with the\n"
    "predicted latency of the derived network (and of the same network all on the device and\n"
    "all on the edge). Then: offnas train --arch DIR/arch.json --out DIR2.\n";

int cmd_derive(int argc, char **argv)
{
    const char *run = NULL;
    const struct cmd_option options[] = {{"--run", CMD_STRING, &run, 0, 0}};
    int status = cmd_parse(argc, argv, "derive", DERIVE_USAGE, NULL, options, 1);
    if (status != CMD_CONTINUE)
        return status;
    if (!run)
        return cmd_usage_error("derive: --run DIR is required");
    char path[JOB_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/checkpoint.h5", run);
    char *text = search_checkpoint_job(path);
    struct job job;
    if (!text || job_load_text(&job, text, run, "job.ini")) {
        free(text);
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    struct net *net = net_create(&job.net, 1, job.data_resize, 1, 10, 0, 1);
    struct arch arch = {0};
    struct latency_table *tables = offnas_calloc(2, sizeof *tables);
    struct search_state state = {0};
    int rc = 1;
    if (!net)
        goto done;
    arch_init(&arch, net, 0.0f);
    if (search_load_checkpoint(path, net, &arch, &state))
        goto done;
    char lut_dev[JOB_PATH_MAX * 2], lut_edge[JOB_PATH_MAX * 2];
    snprintf(lut_dev, sizeof lut_dev, "%s/lut_device.h5", run);
    snprintf(lut_edge, sizeof lut_edge, "%s/lut_edge.h5", run);
    if (latency_load(&tables[0], lut_dev, net) || latency_load(&tables[1], lut_edge, net))
        goto done;
    struct arch_cost cost;
    if (search_cost_init(&cost, &job, &tables[0], &tables[1]))
        goto done;
    int ops[NET_MAX_LAYERS], split, kept;
    float mask[NET_MAX_CHANNELS];
    arch_derive(&arch, ops, &split, mask, &kept);
    struct arch_latency lat = arch_network_latency(&arch, &cost, ops, split, kept);
    struct arch_latency dev = arch_network_latency(&arch, &cost, ops, net->layer_count + 1, 0);
    struct arch_latency edge = arch_network_latency(&arch, &cost, ops, 0, 0);

    json_t *root = json_object(), *names = json_array(), *chans = json_array();
    char opnames[JOB_TEXT_MAX] = "", name[16];
    for (int l = 0; l < net->layer_count; l++) {
        op_spec_name(&net->layers[l].cand[ops[l]].spec, name);
        json_array_append_new(names, json_string(name));
        strcat(opnames, l ? ", " : "");
        strcat(opnames, name);
    }
    int total = split >= 1 && split <= net->layer_count ? arch.channels[split] : 0;
    for (int c = 0; c < total; c++)
        if (mask[c] != 0.0f)
            json_array_append_new(chans, json_integer(c));
    json_object_set_new(root, "ops", names);
    json_object_set_new(root, "layers", json_string(job.net_layers));
    json_object_set_new(root, "split_point", json_integer(split));
    json_object_set_new(root, "kept_channels", json_integer(kept));
    json_object_set_new(root, "total_channels", json_integer(total));
    json_object_set_new(root, "channels", chans);
    json_object_set_new(root, "input_side", json_integer(job.data_resize));
    json_object_set_new(root, "wire", json_string(job.search_wire));
    json_object_set_new(root, "network", json_string(cost.link.name));
    json_object_set_new(root, "predicted_latency_ms", cmd_latency_json(&lat));
    json_object_set_new(root, "all_device_ms", json_real(dev.total));
    json_object_set_new(root, "all_edge_ms", json_real(edge.total));
    json_object_set_new(root, "search_run", json_string(run));
    json_object_set_new(root, "lut_device", json_string(lut_dev));
    json_object_set_new(root, "lut_edge", json_string(lut_edge));
    json_object_set_new(root, "job", json_string(text));
    snprintf(path, sizeof path, "%s/arch.json", run);
    int wrc = train_write_json(root, path);
    json_decref(root);
    if (wrc)
        goto done;
    printf("ops: %s\nsplit_point: %d (of 0..%d)\nkept_channels: %d of %d\n"
           "predicted_ms: %.3f (device %.3f, transfer %.3f, edge %.3f); all on device %.3f, all "
           "on edge %.3f\narch: %s\n",
           opnames, split, net->layer_count + 1, kept, total, lat.total, lat.device,
           lat.transfer, lat.edge, dev.total, edge.total, path);
    rc = 0;
done:
    if (rc)
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
    free(text);
    free(tables);
    arch_free(&arch);
    net_free(net);
    return rc;
}
