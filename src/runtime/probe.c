/* probe: a partition measured over TCP by the profiler ranks (see probe.h). */
#define _POSIX_C_SOURCE 200809L
#include "probe.h"

#include "common.h"
#include "sock.h"
#include "split.h"
#include "timing.h"
#include "wire.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROBE_LINK_REPEATS 5
#define PROBE_MAX_PROBE 65535

/* The halves of p on net, and the hello both sides send. */
static int probe_open(struct split_half *h, struct net *net, const struct probe_partition *p,
                      struct wire_hello *hello)
{
    if (p->layers != net->layer_count || p->split < 1 || p->split > p->layers)
        return offnas_error("probe: partition of %d layers split %d, the network has %d layers",
                            p->layers, p->split, net->layer_count);
    for (int l = 0; l < p->layers; l++) {
        if (p->ops[l] < 0 || p->ops[l] >= net->layers[l].candidate_count)
            return offnas_error("probe: op %d of layer %d is not a candidate", p->ops[l], l + 1);
        net->choice[l] = p->ops[l];
    }
    int total = net_out_channels(net, p->split);
    if (p->kept < 1 || p->kept > total)
        return offnas_error("probe: %d kept channels of %d", p->kept, total);
    float mask[NET_MAX_CHANNELS] = {0};
    for (int c = 0; c < p->kept; c++)
        mask[c] = 1.0f;
    OFFNAS_TRY(split_half_init(h, net, p->split, mask));
    memset(hello, 0, sizeof *hello);
    hello->split = p->split;
    hello->total_channels = total;
    hello->kept = p->kept;
    hello->format = p->format;
    char name[16];
    size_t n = 0;
    for (int l = 0; l < p->layers && n < 120; l++)
        n += (size_t)snprintf(hello->model + n, sizeof hello->model - n, "%s%s", l ? "," : "",
                              op_spec_name(&net->layers[l].cand[p->ops[l]].spec, name));
    snprintf(hello->model + n, sizeof hello->model - n, "; split %d; %d/%d channels; probe",
             p->split, p->kept, total);
    uint64_t fp = wire_fingerprint(WIRE_FINGERPRINT_SEED, hello->model, strlen(hello->model));
    hello->fingerprint = wire_fingerprint_floats(fp, net->params, net->param_count);
    return 0;
}

static double median(double *v, int n)
{
    return n < 1 ? 0 : timing_of_samples(v, n).median;
}

int probe_fit_line(const double *x, const double *y, int n, double *a, double *b)
{
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++) {
        sx += x[i];
        sy += y[i];
        sxx += x[i] * x[i];
        sxy += x[i] * y[i];
    }
    double den = n * sxx - sx * sx;
    if (n < 2 || !(den > 1e-12 * (1 + sxx * n)))
        return -1;
    *b = (n * sxy - sx * sy) / den;
    *a = (sy - *b * sx) / n;
    return 0;
}

int probe_edge_serve(int listen_fd, struct net *net, const struct probe_partition *p,
                     double timeout, double *edge_ms)
{
    *edge_ms = 0;
    struct split_half h;
    struct wire_hello mine, theirs;
    int rc = probe_open(&h, net, p, &mine);
    mine.role = WIRE_ROLE_EDGE;
    struct pollfd pf = {listen_fd, POLLIN, 0};
    int fd = -1;
    if (!rc) {
        int r;
        while ((r = poll(&pf, 1, (int)(timeout * 1000))) < 0 && errno == EINTR)
            ;
        if (r <= 0 || (fd = accept(listen_fd, NULL, NULL)) < 0)
            rc = offnas_error("probe: no device connected within %.0f s", timeout);
        else
            sock_set_nonblocking(fd, 0);
    }
    struct wire_buf in = {0}, out = {0};
    struct wire_header hd;
    struct wire_tensor *t = offnas_malloc(sizeof *t);
    float *values = offnas_calloc((size_t)h.height * h.width * (h.kept ? h.kept : 1), sizeof(float));
    double *times = offnas_calloc(4096, sizeof(double));
    int count = 0;
    if (!rc) {
        int e = sock_recv_frame(fd, &hd, &in, WIRE_MAX_PAYLOAD, offnas_now() + timeout);
        if (!e && hd.type != WIRE_HELLO)
            e = offnas_error("probe: the device's first message is of type %d", hd.type);
        if (!e && (wire_decode_hello(in.data, hd.payload_bytes, &theirs) ||
                   wire_hello_compare(&mine, &theirs))) {
            char why[512]; /* tell the device why, then close */
            snprintf(why, sizeof why, "%s", offnas_last_error());
            if (!wire_encode_error(&out, WIRE_E_MISMATCH, 0, why))
                sock_send_all(fd, out.data, out.len, offnas_now() + 5);
            e = offnas_error("probe: %s", why);
        }
        if (!e)
            e = wire_encode_hello(&out, &mine) ||
                sock_send_all(fd, out.data, out.len, offnas_now() + timeout);
        rc = e ? -1 : 0;
    }
    while (!rc) {
        int e = sock_recv_frame(fd, &hd, &in, WIRE_MAX_PAYLOAD, offnas_now() + timeout);
        if (e < 0)
            break; /* the device is done (closed) or gone */
        if (e > 0 || hd.type != WIRE_TENSOR ||
            wire_decode_tensor(in.data, hd.payload_bytes, 0, t)) {
            rc = offnas_error("probe: a bad frame from the device: %s", offnas_last_error());
            break;
        }
        uint32_t us = 0;
        if (t->h == h.height && t->w == h.width && t->c == h.kept && t->format == p->format) {
            double t0 = offnas_now();
            wire_tensor_dequantize(t, values);
            split_edge_forward(&h, values);
            us = (uint32_t)((offnas_now() - t0) * 1e6);
            if (count < 4096)
                times[count++] = us / 1000.0;
        }
        out.len = 0;
        if (wire_encode_result(&out, t->id, us, net->classes, net->logits) ||
            sock_send_all(fd, out.data, out.len, offnas_now() + timeout))
            break;
    }
    *edge_ms = median(times, count);
    if (fd >= 0)
        close(fd);
    free(times), free(values), free(t);
    wire_buf_free(&in);
    wire_buf_free(&out);
    split_half_free(&h);
    return rc;
}

/* One request: frame out, result in; *ms the round trip, *edge_us the edge's figure. */
static int request(int fd, const struct wire_buf *frame, struct wire_buf *in, uint64_t id,
                   double *ms, uint32_t *edge_us)
{
    struct wire_header hd;
    struct wire_result *res = offnas_malloc(sizeof *res);
    double t0 = offnas_now();
    int e = sock_send_all(fd, frame->data, frame->len, t0 + 30);
    if (!e)
        e = sock_recv_frame(fd, &hd, in, WIRE_MAX_PAYLOAD, t0 + 30);
    *ms = (offnas_now() - t0) * 1e3;
    if (!e && (hd.type != WIRE_RESULT || wire_decode_result(in->data, hd.payload_bytes, res) ||
               res->id != id))
        e = offnas_error("probe: request %llu was not answered by its result",
                         (unsigned long long)id);
    *edge_us = e ? 0 : res->edge_us;
    free(res);
    return e ? -1 : 0;
}

int probe_device_run(const struct sockaddr_in *edge, struct net *net,
                     const struct probe_partition *p, int repeats, struct probe_result *r)
{
    memset(r, 0, sizeof *r);
    struct split_half h;
    struct wire_hello mine, theirs;
    OFFNAS_TRY(probe_open(&h, net, p, &mine));
    mine.role = WIRE_ROLE_DEVICE;
    float *x = offnas_calloc((size_t)net->side * net->side * net->in_channels, sizeof(float));
    for (size_t i = 0; i < (size_t)net->side * net->side * net->in_channels; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    const int n_probe = 3 * PROBE_LINK_REPEATS;
    const int n = repeats + n_probe;
    double *dev = offnas_calloc((size_t)n, sizeof(double)), *tra = offnas_calloc((size_t)n, sizeof(double));
    double *edg = offnas_calloc((size_t)n, sizeof(double)), *tot = offnas_calloc((size_t)n, sizeof(double));
    double *bytes = offnas_calloc((size_t)n, sizeof(double)), *link = offnas_calloc((size_t)n, sizeof(double));
    struct wire_buf frame = {0}, in = {0};
    uint8_t *raw = offnas_calloc(PROBE_MAX_PROBE, 1);
    int rc = 0, links = 0;
    int fd = sock_connect(edge, 10000);
    if (fd < 0)
        rc = -1;
    if (!rc) {
        struct wire_header hd;
        rc = wire_encode_hello(&frame, &mine) || sock_send_all(fd, frame.data, frame.len, offnas_now() + 30);
        struct wire_error_msg err;
        if (!rc && (rc = sock_recv_frame(fd, &hd, &in, WIRE_MAX_PAYLOAD, offnas_now() + 30)) == 0) {
            if (hd.type == WIRE_ERROR && !wire_decode_error(in.data, hd.payload_bytes, &err))
                rc = offnas_error("%s", err.message);
            else if (hd.type != WIRE_HELLO || wire_decode_hello(in.data, hd.payload_bytes, &theirs))
                rc = offnas_error("the edge answered the hello with a %d message", hd.type);
            else
                rc = wire_hello_compare(&mine, &theirs);
        }
        if (rc)
            rc = offnas_error("probe: the edge refused the partition: %s", offnas_last_error());
    }
    for (int i = 0; i < repeats && !rc; i++) { /* the partition */
        double t0 = offnas_now();
        const float *sent = split_device_forward(&h, x);
        frame.len = 0;
        rc = wire_encode_tensor(&frame, (uint64_t)i + 1, p->format, sent, NULL, h.height, h.width,
                                h.kept, h.total, h.channels);
        dev[i] = (offnas_now() - t0) * 1e3;
        uint32_t us = 0;
        double ms = 0;
        if (!rc)
            rc = request(fd, &frame, &in, (uint64_t)i + 1, &ms, &us);
        edg[i] = us / 1000.0;
        tra[i] = ms - edg[i];
        tot[i] = dev[i] + ms;
        bytes[links] = (double)frame.len;
        link[links++] = tra[i];
        r->frame_bytes = (double)frame.len;
    }
    r->samples = rc ? 0 : repeats;
    /* link probes: 256 bytes, the partition's size and four times it (u8, echoed) */
    const int sizes[3] = {256, (int)r->frame_bytes, (int)(4 * r->frame_bytes)};
    for (int k = 0; k < 3 && !rc; k++)
        for (int j = 0; j < PROBE_LINK_REPEATS && !rc; j++) {
            int s = sizes[k] < 1 ? 1 : sizes[k] > PROBE_MAX_PROBE ? PROBE_MAX_PROBE : sizes[k];
            frame.len = 0;
            uint64_t id = 1000000u + (uint64_t)(k * PROBE_LINK_REPEATS + j);
            rc = wire_encode_tensor(&frame, id, WIRE_U8, NULL, raw, s, 1, 1, 1, NULL);
            uint32_t us = 0;
            double ms = 0;
            if (!rc)
                rc = request(fd, &frame, &in, id, &ms, &us);
            bytes[links] = (double)frame.len;
            link[links++] = ms;
        }
    if (fd >= 0)
        close(fd);
    if (!rc) {
        double a, b;
        if (!probe_fit_line(bytes, link, links, &a, &b) && b > 0 && a >= 0) {
            r->link_fitted = 1;
            r->rtt_ms = a;
            r->bandwidth_mbps = 8.0 / (b * 1e3);
        }
        r->device_ms = median(dev, repeats);
        r->transfer_ms = median(tra, repeats);
        r->edge_ms = median(edg, repeats);
        r->total_ms = median(tot, repeats);
    }
    free(dev), free(tra), free(edg), free(tot), free(bytes), free(link), free(raw), free(x);
    wire_buf_free(&frame);
    wire_buf_free(&in);
    split_half_free(&h);
    return rc ? -1 : 0;
}
