/* cmd_runtime: `offnas edge-serve` and `offnas device-run`, the split runtime over TCP
 * (src/runtime/: model.h, edge.h, device.h). */
#define _POSIX_C_SOURCE 200809L
#include "cmd.h"
#include "common.h"
#include "device.h"
#include "edge.h"
#include "sock.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char EDGE_USAGE[] =
    "usage: offnas edge-serve --run DIR [--listen ADDR:PORT] [--threads N]\n"
    "                         [--max-connections N] [--read-timeout S] [--idle-timeout S]\n"
    "                         [--max-frame BYTES] [--ready-file FILE] [--split S]\n"
    "                         [--set K=V ...]\n"
    "\n"
    "Serves the edge half of the split network that `offnas train --arch` wrote to DIR\n"
    "(arch.json, model.h5) to many devices at once over TCP (docs/formats.md, \"Wire protocol\").\n"
    "Binds to 127.0.0.1:7878 unless told; ADDR:PORT with port 0 takes any free port (the address\n"
    "is logged, and written to FILE with --ready-file). Threads N (default 1), each with its own\n"
    "copy of the network; at most N connections (default 64); a frame begun must arrive within\n"
    "S s (default 10), a connection idle for S s is closed (default 60); frames of at most\n"
    "BYTES (default: twice the model's tensor frame, at least 64 KiB). One log line per\n"
    "connection on stderr. SIGTERM or SIGINT: answers what was received, then exits 0.\n"
    "--split S serves the same weights split after layer S with every channel sent (a sweep\n"
    "of the splits; device-run takes the same --split).\n";

static const char DEVICE_USAGE[] =
    "usage: offnas device-run --run DIR [--server HOST:PORT] [--images N] [--rtt-ms X]\n"
    "                         [--warmup N] [--timeout S] [--tables DEVICE.h5,EDGE.h5] [--check]\n"
    "                         [--split S] [--out FILE] [--set K=V ...]\n"
    "\n"
    "Runs the device half of DIR's split network on the job's test images at batch 1, sends\n"
    "what crosses the split to an `offnas edge-serve` of the same run, and receives the class\n"
    "scores. Reports accuracy, bytes per image and measured device / transfer / edge /\n"
    "end-to-end milliseconds (median, p90, p99) beside the predicted breakdown, into FILE\n"
    "(default DIR/runtime.json). N images (default: the whole test split), the first 10 (or\n"
    "--warmup N) not timed; --rtt-ms X sleeps X ms per request (half before the send, half\n"
    "after the reply): the round trip a tbf-shaped link does not add. --tables predicts with\n"
    "the tables of the machines the halves run on (scales 1) instead of arch.json's; --set\n"
    "network.preset=NAME predicts for another link. --check runs the edge half here too and\n"
    "counts results that differ. A dropped connection is re-opened once and reported.\n"
    "A split after the last layer runs all on the device and needs no --server. --split S\n"
    "runs the same weights split after layer S, every channel sent (the edge-serve must be\n"
    "started with the same --split: the hello checks it).\n";

/* Parses a number of seconds or milliseconds for option name in [min, max]. */
static int parse_number(const char *text, const char *name, double min, double max, double *out)
{
    if (!text)
        return 0;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v) || v < min || v > max)
        return cmd_usage_error("%s: '%s' is not a number in %g..%g", name, text, min, max);
    *out = v;
    return 0;
}

/* tables: "DEV.h5,EDGE.h5", NULL for arch.json's, or EVAL_NO_TABLES (the edge: no prediction) */
static int open_model(struct runtime_model *rm, const char *run, const struct cmd_job_options *o,
                      const char *tables, int split)
{
    struct runtime_model_options mo = {.sets = o->sets, .set_count = o->set_count,
                                       .split = split, .no_tables = tables == EVAL_NO_TABLES};
    if (tables == EVAL_NO_TABLES)
        tables = NULL;
    char dev[1024], edge[1024];
    if (tables) {
        const char *comma = strchr(tables, ',');
        if (!comma || comma == tables || !comma[1] || strchr(comma + 1, ',') ||
            (size_t)(comma - tables) >= sizeof dev || strlen(comma + 1) >= sizeof edge) {
            fprintf(stderr, "offnas: device-run: --tables: '%s' is not DEVICE.h5,EDGE.h5\n",
                    tables);
            return 2;
        }
        snprintf(dev, sizeof dev, "%.*s", (int)(comma - tables), tables);
        snprintf(edge, sizeof edge, "%s", comma + 1);
        mo.lut_device = dev;
        mo.lut_edge = edge;
        mo.tables_unscaled = 1;
    }
    if (runtime_model_open(rm, run, &mo)) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        runtime_model_close(rm);
        return 1;
    }
    return 0;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    edge_request_stop();
}

int cmd_edge_serve(int argc, char **argv)
{
    struct cmd_job_options opts = {0};
    const char *run = NULL, *listen = "127.0.0.1:7878", *read_t = NULL, *idle_t = NULL;
    const char *ready = NULL;
    int threads = 1, max_conn = 64, max_frame = 0, split = -1;
    const struct cmd_option options[] = {
        {"--run", CMD_NEEDED, &run, 0, 0},
        {"--split", CMD_COUNT, &split, 0, NET_MAX_LAYERS + 1},
        {"--listen", CMD_STRING, &listen, 0, 0},
        {"--threads", CMD_COUNT, &threads, 1, 64},
        {"--max-connections", CMD_COUNT, &max_conn, 1, 4096},
        {"--read-timeout", CMD_STRING, &read_t, 0, 0},
        {"--idle-timeout", CMD_STRING, &idle_t, 0, 0},
        {"--max-frame", CMD_COUNT, &max_frame, 64, (long)WIRE_MAX_PAYLOAD},
        {"--ready-file", CMD_STRING, &ready, 0, 0}};
    int status = cmd_parse(argc, argv, "edge-serve", EDGE_USAGE, &opts, options,
                           (int)OFFNAS_ARRAY_LEN(options));
    if (status != CMD_CONTINUE)
        return status;
    struct edge_options eo = {.threads = threads, .max_connections = max_conn,
                              .read_timeout = 10, .idle_timeout = 60, .ready_file = ready,
                              .log = stderr};
    if (parse_number(read_t, "edge-serve: --read-timeout", 0.01, 86400, &eo.read_timeout) ||
        parse_number(idle_t, "edge-serve: --idle-timeout", 0.01, 86400 * 30, &eo.idle_timeout))
        return 2;
    if (sock_parse_addr(listen, "--listen", 1, &eo.listen)) {
        fprintf(stderr, "offnas: edge-serve: %s\n", offnas_last_error());
        return 2;
    }
    struct runtime_model rm;
    if ((status = open_model(&rm, run, &opts, EVAL_NO_TABLES, split)))
        return status;
    size_t tensor = 64 + 2 * (size_t)rm.kept +
                    (size_t)rm.height * rm.width * (rm.kept ? rm.kept : 1) * 4;
    eo.max_frame = max_frame ? (uint32_t)max_frame
                             : (uint32_t)(2 * tensor > 65536 ? 2 * tensor : 65536);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct edge_stats st;
    int rc = edge_serve(&rm, &eo, &st);
    if (rc)
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
    runtime_model_close(&rm);
    return rc ? 1 : 0;
}

int cmd_device_run(int argc, char **argv)
{
    struct cmd_job_options opts = {0};
    const char *run = NULL, *server = NULL, *rtt = NULL, *timeout = NULL, *tables = NULL;
    const char *out = NULL;
    int images = 0, warmup = 10, check = 0, split = -1;
    const struct cmd_option options[] = {
        {"--run", CMD_NEEDED, &run, 0, 0},
        {"--split", CMD_COUNT, &split, 0, NET_MAX_LAYERS + 1},
        {"--server", CMD_STRING, &server, 0, 0},
        {"--images", CMD_COUNT, &images, 1, 100000000},
        {"--warmup", CMD_COUNT, &warmup, 0, 100000000},
        {"--rtt-ms", CMD_STRING, &rtt, 0, 0},
        {"--timeout", CMD_STRING, &timeout, 0, 0},
        {"--tables", CMD_STRING, &tables, 0, 0},
        {"--check", CMD_FLAG, &check, 0, 0},
        {"--out", CMD_STRING, &out, 0, 0}};
    int status = cmd_parse(argc, argv, "device-run", DEVICE_USAGE, &opts, options,
                           (int)OFFNAS_ARRAY_LEN(options));
    if (status != CMD_CONTINUE)
        return status;
    struct device_options o = {.server_text = server, .images = images, .warmup = warmup,
                               .timeout = 30, .check = check, .progress = stderr};
    if (parse_number(rtt, "device-run: --rtt-ms", 0, 60000, &o.rtt_ms) ||
        parse_number(timeout, "device-run: --timeout", 0.01, 86400, &o.timeout))
        return 2;
    if (server && sock_parse_addr(server, "--server", 0, &o.server)) { /* before the model */
        fprintf(stderr, "offnas: device-run: %s\n", offnas_last_error());
        return 2;
    }
    char out_default[1100];
    snprintf(out_default, sizeof out_default, "%s/runtime.json", run);
    o.out = out ? out : out_default;
    struct runtime_model rm;
    if ((status = open_model(&rm, run, &opts, tables, split)))
        return status;
    int rc = 0;
    if (rm.split <= rm.layers) {
        if (!server) {
            runtime_model_close(&rm);
            return cmd_usage_error("device-run: --server HOST:PORT is needed: the model splits "
                                   "after layer %d", rm.split);
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct device_report r;
    rc = device_run(&rm, &o, &r);
    if (rc) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
    } else {
        const struct arch_latency *p = &rm.predicted;
        printf("images: %ld, accuracy %.4f (%ld correct)%s\n", r.images, r.accuracy, r.correct,
               r.reconnects ? ", 1 reconnect" : "");
        if (check)
            printf("checked: %ld results, %ld differ from the edge half run here\n", r.checked,
                   r.mismatches);
        printf("split %d, %d of %d channels, %s: %.0f bytes per image (%.0f of values, "
               "predicted %.0f)\n", rm.split, rm.kept, rm.total,
               rm.format ? wire_format_name(rm.format) : "nothing sent", r.frame_bytes,
               r.value_bytes, rm.bytes_predicted);
        printf("%-10s %9s %9s %9s %11s\n", "ms", "median", "p90", "p99", "predicted");
        const struct timing *q[4] = {&r.device, &r.transfer, &r.edge, &r.total};
        const char *names[4] = {"device", "transfer", "edge", "total"};
        const double pred[4] = {p->device, p->transfer, p->edge, p->total};
        for (int k = 0; k < 4; k++)
            printf("%-10s %9.3f %9.3f %9.3f %11.3f\n", names[k], q[k]->median, q[k]->p90,
                   q[k]->p99, pred[k]);
        printf("link predicted: %s, %.1f Mbit/s, rtt %.1f ms; rtt added here %.1f ms\n"
               "runtime: %s\n", rm.m.cost.link.name, rm.m.cost.link.bandwidth_mbps,
               rm.m.cost.link.rtt_ms, o.rtt_ms, o.out);
        if (check && r.mismatches)
            rc = 1, fprintf(stderr, "offnas: device-run: %ld of %ld results differ from the "
                                    "edge half run here\n", r.mismatches, r.checked);
    }
    runtime_model_close(&rm);
    return rc ? 1 : 0;
}
