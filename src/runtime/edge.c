/* edge: the edge server's event loops (see edge.h). */
#define _GNU_SOURCE /* accept4 */
#include "edge.h"

#include "common.h"
#include "op.h"
#include "sock.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define EDGE_OUT_LIMIT (1u << 20) /* stop reading a connection whose replies pile up beyond */
#define EDGE_POLL_MS 100
#define EDGE_DRAIN_SECONDS 5.0

static volatile sig_atomic_t edge_stop;

void edge_request_stop(void)
{
    edge_stop = 1;
}

enum conn_state { CONN_HELLO, CONN_READY, CONN_CLOSING };

struct conn {
    int fd;
    long serial;
    char peer[32];
    enum conn_state state;
    uint8_t hdr[WIRE_HEADER_BYTES];
    size_t hdr_got;
    struct wire_header h;
    uint8_t *payload;
    size_t payload_cap, payload_got;
    struct wire_buf out;
    size_t out_sent;
    double opened, last_active, frame_started; /* frame_started 0: between frames */
    long requests, errors;
    const char *why; /* why it ended, for the log */
    char reason[160];
};

struct edge_shared {
    const struct runtime_model *rm;
    const struct edge_options *o;
    int listen_fd;
    atomic_int open_connections;
    atomic_long serial, connections, requests, errors, refused;
    pthread_mutex_t log_lock;
    char error[512]; /* the first worker's failure */
    atomic_int failed;
};

struct edge_worker {
    struct edge_shared *sh;
    struct runtime_worker w;
    struct conn *conns;
    int count;
    struct wire_tensor tensor;
    pthread_t thread;
};

static void log_line(struct edge_shared *sh, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void log_line(struct edge_shared *sh, const char *fmt, ...)
{
    if (!sh->o->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&sh->log_lock);
    fputs("edge-serve: ", sh->o->log);
    vfprintf(sh->o->log, fmt, ap);
    fputc('\n', sh->o->log);
    fflush(sh->o->log);
    pthread_mutex_unlock(&sh->log_lock);
    va_end(ap);
}

/* Queues an ERROR reply and closes the connection once it is sent. */
static void conn_fail(struct conn *c, int code, uint64_t id, const char *message)
{
    c->errors++;
    wire_encode_error(&c->out, code, id, message);
    c->state = CONN_CLOSING;
    c->why = c->reason;
    snprintf(c->reason, sizeof c->reason, "refused (%s): %.120s", wire_error_name(code), message);
}

static void conn_close(struct edge_worker *wk, int i)
{
    struct edge_shared *sh = wk->sh;
    struct conn *c = &wk->conns[i];
    log_line(sh, "connection %ld from %s: %ld requests, %ld errors, %.2f s, %s", c->serial,
             c->peer, c->requests, c->errors, offnas_now() - c->opened, c->why ? c->why : "closed");
    close(c->fd);
    free(c->payload);
    wire_buf_free(&c->out);
    atomic_fetch_sub(&sh->open_connections, 1);
    atomic_fetch_add(&sh->requests, c->requests);
    atomic_fetch_add(&sh->errors, c->errors);
    wk->conns[i] = wk->conns[--wk->count];
}

/* One complete frame of c (header in c->h, payload in c->payload). */
static void conn_frame(struct edge_worker *wk, struct conn *c)
{
    const struct runtime_model *rm = wk->sh->rm;
    int e = wire_check_crc(&c->h, c->payload);
    if (e) {
        conn_fail(c, e, 0, offnas_last_error());
        return;
    }
    if (c->state == CONN_HELLO) {
        struct wire_hello theirs, mine = rm->hello;
        mine.role = WIRE_ROLE_EDGE;
        if (c->h.type != WIRE_HELLO) {
            conn_fail(c, WIRE_E_STATE, 0, "the first message must be a hello");
            return;
        }
        if ((e = wire_decode_hello(c->payload, c->h.payload_bytes, &theirs)) ||
            (e = wire_hello_compare(&mine, &theirs))) {
            conn_fail(c, e, 0, offnas_last_error());
            return;
        }
        wire_encode_hello(&c->out, &mine);
        c->state = CONN_READY;
        return;
    }
    if (c->h.type != WIRE_TENSOR) {
        conn_fail(c, WIRE_E_STATE, 0, "after the hello, only tensors are served");
        return;
    }
    struct wire_tensor *t = &wk->tensor;
    size_t max_values = (size_t)rm->height * rm->width * (rm->kept ? rm->kept : 1);
    if ((e = wire_decode_tensor(c->payload, c->h.payload_bytes, max_values, t))) {
        conn_fail(c, e, 0, offnas_last_error());
        return;
    }
    double t0 = offnas_now();
    if ((e = runtime_edge_run(&wk->w, rm, t))) {
        conn_fail(c, e, t->id, offnas_last_error());
        return;
    }
    double us = (offnas_now() - t0) * 1e6;
    const struct net *net = wk->w.net;
    wire_encode_result(&c->out, t->id, us > 4e9 ? 4000000000u : (uint32_t)us, net->classes,
                       net->logits);
    c->requests++;
}

/* Reads what c has: frames are completed and answered one at a time. Returns 0, or -1 when
 * the connection is to be closed now (peer gone, socket error). */
static int conn_read(struct edge_worker *wk, struct conn *c, double now)
{
    const struct edge_options *o = wk->sh->o;
    while (c->state != CONN_CLOSING && c->out.len - c->out_sent < EDGE_OUT_LIMIT) {
        uint8_t *dst;
        size_t want;
        if (c->hdr_got < WIRE_HEADER_BYTES) {
            dst = c->hdr + c->hdr_got;
            want = WIRE_HEADER_BYTES - c->hdr_got;
        } else {
            dst = c->payload + c->payload_got;
            want = c->h.payload_bytes - c->payload_got;
        }
        ssize_t n = want ? recv(c->fd, dst, want, MSG_DONTWAIT) : 0;
        if (want && n == 0) {
            c->why = c->hdr_got ? "the device closed the connection in mid-frame"
                                : "closed by the device";
            return -1;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            snprintf(c->reason, sizeof c->reason, "receive: %s", strerror(errno));
            c->why = c->reason;
            return -1;
        }
        c->last_active = now;
        if (c->hdr_got == 0 && n > 0)
            c->frame_started = now;
        if (c->hdr_got < WIRE_HEADER_BYTES) {
            c->hdr_got += (size_t)n;
            if (c->hdr_got < WIRE_HEADER_BYTES)
                continue;
            int e = wire_decode_header(c->hdr, o->max_frame, &c->h);
            if (e) {
                conn_fail(c, e, 0, offnas_last_error());
                return 0;
            }
            if (c->payload_cap < c->h.payload_bytes + 1) {
                free(c->payload);
                c->payload_cap = c->h.payload_bytes + 1;
                c->payload = offnas_malloc(c->payload_cap);
            }
            c->payload_got = 0;
        } else {
            c->payload_got += (size_t)n;
        }
        if (c->payload_got == c->h.payload_bytes) {
            conn_frame(wk, c);
            c->hdr_got = c->payload_got = 0;
            c->frame_started = 0;
        }
    }
    return 0;
}

/* Sends what c has queued. Returns 0, or -1 when the connection is to be closed now. */
static int conn_write(struct conn *c)
{
    while (c->out_sent < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_sent, c->out.len - c->out_sent,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0) {
            snprintf(c->reason, sizeof c->reason, "send: %s", strerror(errno));
            c->why = c->reason;
            return -1;
        }
        c->out_sent += (size_t)n;
    }
    c->out.len = c->out_sent = 0; /* all out: reuse the buffer from its start */
    return 0;
}

static void worker_accept(struct edge_worker *wk, double now)
{
    struct edge_shared *sh = wk->sh;
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int fd = accept4(sh->listen_fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            /* out of file descriptors: the listener stays readable, so pause instead of
             * spinning on it; EAGAIN: another worker took it, or nothing waits */
            if (errno == EMFILE || errno == ENFILE)
                offnas_sleep_ms(50);
            return;
        }
        char text[32];
        sock_addr_text(&peer, text, sizeof text);
        /* the global count caps every worker's array too (wk->count <= open connections) */
        if (atomic_fetch_add(&sh->open_connections, 1) >= sh->o->max_connections) {
            atomic_fetch_sub(&sh->open_connections, 1);
            atomic_fetch_add(&sh->refused, 1);
            struct wire_buf b = {0};
            char msg[96];
            snprintf(msg, sizeof msg, "the server has %d connections, its maximum",
                     sh->o->max_connections);
            if (!wire_encode_error(&b, WIRE_E_BUSY, 0, msg))
                (void)!send(fd, b.data, b.len, MSG_DONTWAIT | MSG_NOSIGNAL);
            wire_buf_free(&b);
            close(fd);
            log_line(sh, "connection from %s refused: %s", text, msg);
            continue;
        }
        struct conn *c = &wk->conns[wk->count++];
        memset(c, 0, sizeof *c);
        c->fd = fd;
        c->serial = atomic_fetch_add(&sh->serial, 1) + 1;
        snprintf(c->peer, sizeof c->peer, "%s", text);
        c->opened = c->last_active = now;
        atomic_fetch_add(&sh->connections, 1);
    }
}

static void *worker_main(void *arg)
{
    struct edge_worker *wk = arg;
    struct edge_shared *sh = wk->sh;
    const struct edge_options *o = sh->o;
    const int cap = o->max_connections;
    struct pollfd *fds = offnas_calloc((size_t)cap + 1, sizeof *fds);
    op_set_threads(1); /* batch 1 on one core per worker, as the profiles time it */
    double drain_deadline = 0;
    for (;;) {
        int stopping = edge_stop != 0;
        if (stopping && drain_deadline == 0) {
            drain_deadline = offnas_now() + EDGE_DRAIN_SECONDS;
            for (int i = 0; i < wk->count; i++)
                if (!wk->conns[i].why)
                    wk->conns[i].why = "the server stopped";
        }
        if (stopping) { /* close each connection once its answers are out */
            for (int i = wk->count - 1; i >= 0; i--)
                if (wk->conns[i].out.len == wk->conns[i].out_sent ||
                    offnas_now() > drain_deadline)
                    conn_close(wk, i);
            if (wk->count == 0)
                break;
        }
        int n = 0;
        fds[n++] = (struct pollfd){stopping ? -1 : sh->listen_fd, POLLIN, 0};
        for (int i = 0; i < wk->count; i++) {
            struct conn *c = &wk->conns[i];
            short ev = 0;
            if (!stopping && c->state != CONN_CLOSING && c->out.len - c->out_sent < EDGE_OUT_LIMIT)
                ev |= POLLIN;
            if (c->out_sent < c->out.len)
                ev |= POLLOUT;
            fds[n++] = (struct pollfd){c->fd, ev, 0};
        }
        if (poll(fds, (nfds_t)n, EDGE_POLL_MS) < 0 && errno != EINTR) {
            log_line(sh, "poll: %s", strerror(errno));
            break;
        }
        double now = offnas_now();
        /* connections first (their indices match fds[1..]), then new ones */
        for (int i = wk->count - 1; i >= 0; i--) {
            struct conn *c = &wk->conns[i];
            short re = fds[i + 1].revents;
            int drop = 0;
            if (re & (POLLIN | POLLHUP | POLLERR))
                drop = conn_read(wk, c, now);
            if (!drop && (c->out_sent < c->out.len))
                drop = conn_write(c);
            if (!drop && c->state == CONN_CLOSING && c->out_sent == c->out.len)
                drop = 1;
            if (!drop && c->state != CONN_CLOSING) {
                if (c->frame_started && now - c->frame_started > o->read_timeout) {
                    char msg[96];
                    snprintf(msg, sizeof msg, "a frame was not complete within %.1f s",
                             o->read_timeout);
                    conn_fail(c, WIRE_E_TIMEOUT, 0, msg);
                    drop = conn_write(c);
                } else if (!c->frame_started && c->out_sent == c->out.len &&
                           now - c->last_active > o->idle_timeout) {
                    snprintf(c->reason, sizeof c->reason, "idle for %.1f s", o->idle_timeout);
                    c->why = c->reason;
                    drop = 1;
                }
            }
            if (drop)
                conn_close(wk, i);
        }
        if (!stopping && (fds[0].revents & POLLIN))
            worker_accept(wk, now); /* beyond the cap too: those get ERROR busy */
    }
    free(fds);
    return NULL;
}

int edge_serve(const struct runtime_model *rm, const struct edge_options *o,
               struct edge_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    if (rm->split > rm->layers)
        return offnas_error("%s: the model runs all on the device (split %d): nothing to serve",
                            rm->run, rm->split);
    struct edge_shared sh = {.rm = rm, .o = o};
    pthread_mutex_init(&sh.log_lock, NULL);
    struct edge_worker *wk = offnas_calloc((size_t)o->threads, sizeof *wk);
    int rc = 0, started = 0;
    for (int i = 0; i < o->threads && !rc; i++) {
        wk[i].sh = &sh;
        wk[i].conns = offnas_calloc((size_t)o->max_connections, sizeof(struct conn));
        rc = runtime_worker_open(&wk[i].w, rm);
    }
    struct sockaddr_in bound;
    if (!rc && (sh.listen_fd = sock_listen(&o->listen, 128, &bound)) < 0)
        rc = -1;
    if (!rc) {
        char addr[32];
        sock_addr_text(&bound, addr, sizeof addr);
        log_line(&sh, "serving %s (%s, fingerprint %016llx) on %s: %d threads, at most %d "
                 "connections, frames up to %u bytes, timeouts %.1f s read / %.1f s idle",
                 rm->run, rm->hello.model, (unsigned long long)rm->hello.fingerprint, addr,
                 o->threads, o->max_connections, o->max_frame, o->read_timeout, o->idle_timeout);
        if (o->ready_file) {
            FILE *f = fopen(o->ready_file, "w");
            if (f) {
                fprintf(f, "%s\n", addr);
                fclose(f);
            }
        }
        for (; started < o->threads; started++)
            if (pthread_create(&wk[started].thread, NULL, worker_main, &wk[started])) {
                rc = offnas_error("cannot start worker %d", started);
                edge_request_stop();
                break;
            }
        /* on a stop, refuse new connections at once (the workers drain the open ones) */
        while (!edge_stop)
            offnas_sleep_ms(20);
        shutdown(sh.listen_fd, SHUT_RDWR);
        for (int i = 0; i < started; i++)
            pthread_join(wk[i].thread, NULL);
        close(sh.listen_fd);
        stats->connections = sh.connections;
        stats->requests = sh.requests;
        stats->errors = sh.errors;
        stats->refused = sh.refused;
        log_line(&sh, "stopped: %ld connections (%ld refused), %ld requests answered, %ld errors",
                 stats->connections, stats->refused, stats->requests, stats->errors);
    }
    for (int i = 0; i < o->threads; i++) {
        runtime_worker_close(&wk[i].w);
        free(wk[i].conns);
    }
    free(wk);
    pthread_mutex_destroy(&sh.log_lock);
    return rc;
}
