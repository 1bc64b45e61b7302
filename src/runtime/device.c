/* device: the device side of the split runtime (see device.h). */
#define _POSIX_C_SOURCE 200809L
#include "device.h"

#include "common.h"
#include "derived.h"
#include "op.h"
#include "sock.h"
#include "train.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEVICE_CONNECT_MS 5000

/* The connection to the edge and the buffers of one request. */
struct device_link {
    int fd;
    struct wire_buf frame, reply;
    struct wire_header h;
    struct wire_result result;
    struct wire_error_msg err;
};

/* Reads the peer's ERROR in l->reply into an error "edge-serve refused ...". */
static int refused(struct device_link *l, const char *server)
{
    if (wire_decode_error(l->reply.data, l->h.payload_bytes, &l->err))
        return -1;
    return offnas_error("%s: edge-serve refused (%s): %s", server, wire_error_name(l->err.code),
                        l->err.message);
}

/* Exchanges hellos on the connected l->fd (closed on failure): 0, -1 when the server refused
 * (or answered wrong), -2 when the connection failed before an answer. */
static int link_hello(struct device_link *l, const struct runtime_model *rm,
                      const struct device_options *o)
{
    struct wire_hello mine = rm->hello, theirs;
    mine.role = WIRE_ROLE_DEVICE;
    struct wire_buf b = {0};
    double deadline = offnas_now() + o->timeout;
    int e = wire_encode_hello(&b, &mine) || sock_send_all(l->fd, b.data, b.len, deadline);
    wire_buf_free(&b);
    int lost = e != 0;
    if (!e)
        lost = (e = sock_recv_frame(l->fd, &l->h, &l->reply, WIRE_MAX_PAYLOAD, deadline)) < 0;
    if (!e && l->h.type == WIRE_ERROR)
        e = refused(l, o->server_text);
    else if (!e && l->h.type != WIRE_HELLO)
        e = offnas_error("%s: the server answered the hello with a %d message", o->server_text,
                         l->h.type);
    else if (!e && ((e = wire_decode_hello(l->reply.data, l->h.payload_bytes, &theirs)) ||
                    (e = wire_hello_compare(&mine, &theirs))))
        offnas_error("%s: %s", o->server_text, offnas_last_error());
    if (e) {
        close(l->fd);
        l->fd = -1;
        return lost ? -2 : -1;
    }
    return 0;
}

/* Connects and exchanges hellos. */
static int link_open(struct device_link *l, const struct runtime_model *rm,
                     const struct device_options *o)
{
    l->fd = sock_connect(&o->server, DEVICE_CONNECT_MS);
    return l->fd < 0 || link_hello(l, rm, o) ? -1 : 0;
}

/* The one reconnect: the server may be restarting, so connecting is tried for up to
 * DEVICE_RECONNECT_S (every 200 ms); a server that answers and refuses ends it at once. */
#define DEVICE_RECONNECT_S 10.0
static int link_reopen(struct device_link *l, const struct runtime_model *rm,
                       const struct device_options *o)
{
    /* a dying server may still complete a connection and then reset it: that is retried too */
    double deadline = offnas_now() + DEVICE_RECONNECT_S;
    for (;;) {
        l->fd = sock_connect(&o->server, DEVICE_CONNECT_MS);
        int e = l->fd < 0 ? -2 : link_hello(l, rm, o);
        if (e != -2)
            return e ? -1 : 0;
        if (offnas_now() > deadline)
            return -1;
        offnas_sleep_ms(200);
    }
}

/* Sends l->frame and reads the result of request id into l->result: 0; -1 for a lost
 * connection (worth one reconnect); 1 for a refusal or a wrong answer (error set). */
static int link_request(struct device_link *l, const struct runtime_model *rm,
                        const struct device_options *o, uint64_t id)
{
    double deadline = offnas_now() + o->timeout;
    offnas_sleep_ms(o->rtt_ms / 2);
    if (sock_send_all(l->fd, l->frame.data, l->frame.len, deadline))
        return -1;
    int e = sock_recv_frame(l->fd, &l->h, &l->reply, WIRE_MAX_PAYLOAD, deadline);
    if (e < 0)
        return -1;
    if (e > 0)
        return offnas_error("%s: a bad reply to request %llu: %s", o->server_text,
                            (unsigned long long)id, offnas_last_error()), 1;
    offnas_sleep_ms(o->rtt_ms / 2);
    if (l->h.type == WIRE_ERROR)
        return refused(l, o->server_text), 1;
    if (l->h.type != WIRE_RESULT)
        return offnas_error("%s: request %llu was answered by a %d message", o->server_text,
                            (unsigned long long)id, l->h.type), 1;
    if (wire_decode_result(l->reply.data, l->h.payload_bytes, &l->result))
        return offnas_error("%s: %s", o->server_text, offnas_last_error()), 1;
    if (l->result.id != id)
        return offnas_error("%s: the result of request %llu came for request %llu",
                            o->server_text, (unsigned long long)l->result.id,
                            (unsigned long long)id), 1;
    if (l->result.classes != rm->m.classes)
        return offnas_error("%s: a result of %d classes, the model has %d", o->server_text,
                            l->result.classes, rm->m.classes), 1;
    return 0;
}

/* The summary of v[0..n) (sorted in place); all zero when nothing was timed. */
static struct timing quantiles(double *v, long n)
{
    return n < 1 ? (struct timing){0} : timing_of_samples(v, (int)n);
}

static json_t *quantiles_json(const struct timing *q)
{
    return json_pack("{s:f, s:f, s:f, s:f}", "median", q->median, "p90", q->p90, "p99", q->p99,
                     "mean", q->mean);
}

static int write_report(const struct runtime_model *rm, const struct device_options *o,
                        const struct device_report *r)
{
    const struct eval_model *m = &rm->m;
    json_t *root = json_object();
    json_object_set_new(root, "run", json_string(rm->run));
    json_object_set_new(root, "server", rm->split > rm->layers ? json_null()
                                                                 : json_string(o->server_text));
    json_object_set_new(root, "model", json_string(rm->hello.model));
    char fp[24];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)rm->hello.fingerprint);
    json_object_set_new(root, "fingerprint", json_string(fp));
    json_object_set_new(root, "split_point", json_integer(rm->split));
    json_object_set_new(root, "kept_channels", json_integer(rm->kept));
    json_object_set_new(root, "total_channels", json_integer(rm->total));
    json_object_set_new(root, "wire", rm->format ? json_string(wire_format_name(rm->format))
                                                 : json_null());
    json_object_set_new(root, "images", json_integer(r->images));
    json_object_set_new(root, "timed_images", json_integer(r->timed));
    json_object_set_new(root, "correct", json_integer(r->correct));
    json_object_set_new(root, "accuracy", json_real(r->accuracy));
    json_object_set_new(root, "frame_bytes", json_real(r->frame_bytes));
    json_object_set_new(root, "value_bytes", json_real(r->value_bytes));
    json_object_set_new(root, "predicted_bytes", json_real(rm->bytes_predicted));
    json_object_set_new(root, "reconnects", json_integer(r->reconnects));
    json_object_set_new(root, "checked", json_integer(r->checked));
    json_object_set_new(root, "mismatches", json_integer(r->mismatches));
    json_object_set_new(root, "rtt_ms_added", json_real(o->rtt_ms));
    json_t *ms = json_object();
    json_object_set_new(ms, "device", quantiles_json(&r->device));
    json_object_set_new(ms, "transfer", quantiles_json(&r->transfer));
    json_object_set_new(ms, "edge", quantiles_json(&r->edge));
    json_object_set_new(ms, "total", quantiles_json(&r->total));
    json_object_set_new(root, "measured_ms", ms);
    json_object_set_new(root, "predicted_ms", derived_latency_json(&rm->predicted));
    json_object_set_new(root, "device_profile", json_string(m->tables[0].device));
    json_object_set_new(root, "edge_profile", json_string(m->tables[1].device));
    json_object_set_new(root, "device_scale", json_real(m->job.latency_device_scale));
    json_object_set_new(root, "edge_scale", json_real(m->job.latency_edge_scale));
    json_object_set_new(root, "network", json_pack("{s:s, s:f, s:f}", "name", m->cost.link.name,
                                                   "bandwidth_mbps", m->cost.link.bandwidth_mbps,
                                                   "rtt_ms", m->cost.link.rtt_ms));
    json_object_set_new(root, "seconds", json_real(r->seconds));
    int rc = train_write_json(root, o->out);
    json_decref(root);
    return rc;
}

/* Whether the server's scores are the ones the edge half computes here from the same frame. */
static int result_matches(struct runtime_worker *w, const struct runtime_model *rm,
                          const struct device_link *l, struct wire_tensor *t)
{
    struct wire_header h;
    if (wire_decode_header(l->frame.data, WIRE_MAX_PAYLOAD, &h) ||
        wire_decode_tensor(l->frame.data + WIRE_HEADER_BYTES, h.payload_bytes, 0, t) ||
        runtime_edge_run(w, rm, t))
        return 0;
    const float *mine = w->net->logits;
    for (int k = 0; k < rm->m.classes; k++)
        if (fabsf(mine[k] - l->result.scores[k]) > 1e-4f * (1.0f + fabsf(mine[k])))
            return 0;
    return 1;
}

static int argmax(const float *v, int n)
{
    int best = 0;
    for (int k = 1; k < n; k++)
        if (v[k] > v[best])
            best = k;
    return best;
}

int device_run(const struct runtime_model *rm, const struct device_options *o,
               struct device_report *r)
{
    memset(r, 0, sizeof *r);
    const struct job *job = &rm->m.job;
    const int all_device = rm->split > rm->layers;
    op_set_threads(1); /* batch 1 on one core, as `offnas profile` times it */
    /* the images eval measures: the first data.test_limit of /test (only those are read) */
    long rows = 0;
    OFFNAS_TRY(data_rows(job->data_path, "test", &rows));
    if (job->data_test_limit > 0 && job->data_test_limit < rows)
        rows = job->data_test_limit;
    long n = o->images > 0 && o->images < rows ? o->images : rows;
    if (n < 1)
        return offnas_error("%s: the test split is empty: no image to run", job->data_path);
    struct dataset ds;
    OFFNAS_TRY(data_load(&ds, job->data_path, "test", 0, n));
    const struct dataset *test = &ds;
    if (eval_model_check_data(&rm->m, test)) {
        data_free(&ds);
        return -1;
    }
    struct runtime_worker w;
    struct device_link l = {.fd = -1};
    struct train_batch tb;
    struct wire_tensor *t = offnas_malloc(sizeof *t);
    train_batch_init(&tb, 1, job->data_resize, test->channels, test->count);
    double *dev = offnas_calloc((size_t)n, sizeof(double)), *tra = offnas_calloc((size_t)n, sizeof(double));
    double *edg = offnas_calloc((size_t)n, sizeof(double)), *tot = offnas_calloc((size_t)n, sizeof(double));
    int rc = runtime_worker_open(&w, rm);
    if (!rc && !all_device)
        rc = link_open(&l, rm, o);
    const double start = offnas_now();
    double last_progress = start;
    for (long i = 0; i < n && !rc; i++) {
        train_batch_fill(&tb, test, i, 1, 0, NULL);
        const uint64_t id = (uint64_t)i + 1;
        double t0 = offnas_now(), t1, t2, edge_ms = 0;
        const float *scores;
        if (all_device) {
            split_device_forward(&w.half, tb.x);
            t1 = t2 = offnas_now();
            scores = w.net->logits;
        } else {
            l.frame.len = 0;
            rc = runtime_device_encode(&w, rm, tb.x, id, &l.frame);
            t1 = offnas_now();
            if (rc)
                break;
            int e = link_request(&l, rm, o, id);
            if (e < 0 && r->reconnects == 0) {
                if (o->progress)
                    fprintf(o->progress, "device-run: the connection dropped at image %ld (%s); "
                                         "reconnecting once\n", i + 1, offnas_last_error());
                r->reconnects++;
                close(l.fd);
                e = link_reopen(&l, rm, o) ? 1 : link_request(&l, rm, o, id);
            }
            if (e) {
                offnas_error("%s: stopped after %ld of %ld results%s: %s", o->server_text,
                             r->images, n, r->reconnects ? " and a reconnect" : "",
                             offnas_last_error());
                rc = -1;
                break;
            }
            t2 = offnas_now();
            edge_ms = l.result.edge_us / 1000.0;
            scores = l.result.scores;
            if (i == 0) {
                r->frame_bytes = (double)l.frame.len;
                r->value_bytes = (double)rm->height * rm->width * rm->kept *
                                 wire_format_bytes(rm->format);
            }
        }
        r->correct += argmax(scores, rm->m.classes) == tb.labels[0];
        if (o->check && !all_device) {
            r->checked++;
            r->mismatches += !result_matches(&w, rm, &l, t);
        }
        r->images++;
        if (i >= o->warmup || n <= o->warmup) {
            long k = r->timed++;
            dev[k] = (t1 - t0) * 1e3;
            tot[k] = (t2 - t0) * 1e3;
            edg[k] = edge_ms;
            tra[k] = all_device ? 0.0 : tot[k] - dev[k] - edge_ms;
        }
        double now = offnas_now();
        if (o->progress && now - last_progress >= 2.0 && i + 1 < n) {
            last_progress = now;
            double per = (now - start) / (double)(i + 1);
            fprintf(o->progress, "device-run: %ld/%ld images, accuracy %.4f, %.0f s left\n", i + 1,
                    n, (double)r->correct / (double)(i + 1), per * (double)(n - i - 1));
        }
    }
    r->seconds = offnas_now() - start;
    if (l.fd >= 0)
        close(l.fd);
    if (!rc) {
        r->accuracy = (double)r->correct / (double)r->images;
        r->device = quantiles(dev, r->timed);
        r->transfer = quantiles(tra, r->timed);
        r->edge = quantiles(edg, r->timed);
        r->total = quantiles(tot, r->timed);
        if (o->out)
            rc = write_report(rm, o, r);
    }
    free(dev), free(tra), free(edg), free(tot), free(t);
    wire_buf_free(&l.frame);
    wire_buf_free(&l.reply);
    train_batch_free(&tb);
    runtime_worker_close(&w);
    data_free(&ds);
    return rc;
}
