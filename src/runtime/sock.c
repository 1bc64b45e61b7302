/* sock: addresses, sockets and whole frames with deadlines (see sock.h). */
#define _POSIX_C_SOURCE 200809L
#include "sock.h"

#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int sock_parse_addr(const char *text, const char *what, int allow_zero, struct sockaddr_in *out)
{
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    const char *colon = text ? strrchr(text, ':') : NULL;
    if (!colon || colon == text)
        return offnas_error("%s: '%s' is not HOST:PORT", what, text ? text : "");
    char host[64];
    size_t hn = (size_t)(colon - text);
    if (hn >= sizeof host)
        return offnas_error("%s: host '%.*s...' is too long", what, 20, text);
    memcpy(host, text, hn);
    host[hn] = 0;
    if (!strcmp(host, "localhost"))
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
        return offnas_error("%s: '%s' is not an IPv4 address (a.b.c.d or localhost)", what, host);
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || port < (allow_zero ? 0 : 1) || port > 65535)
        return offnas_error("%s: port '%s' is not in %d..65535", what, colon + 1,
                            allow_zero ? 0 : 1);
    out->sin_port = htons((uint16_t)port);
    return 0;
}

const char *sock_addr_text(const struct sockaddr_in *addr, char *buf, size_t size)
{
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &addr->sin_addr, ip, sizeof ip);
    snprintf(buf, size, "%s:%u", ip, (unsigned)ntohs(addr->sin_port));
    return buf;
}

int sock_set_nonblocking(int fd, int on)
{
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) < 0)
        return offnas_error("fcntl O_NONBLOCK: %s", strerror(errno));
    return 0;
}

int sock_listen(const struct sockaddr_in *addr, int backlog, struct sockaddr_in *bound)
{
    char text[64];
    sock_addr_text(addr, text, sizeof text);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return offnas_error("%s: socket: %s", text, strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)addr, sizeof *addr) < 0 || listen(fd, backlog) < 0 ||
        sock_set_nonblocking(fd, 1)) {
        int e = errno;
        close(fd);
        return offnas_error("%s: cannot listen: %s", text, strerror(e));
    }
    socklen_t len = sizeof *bound;
    getsockname(fd, (struct sockaddr *)bound, &len);
    return fd;
}

/* Waits until fd is ready for events or the deadline passes: 1 ready, 0 timed out, -1 error. */
static int wait_ready(int fd, short events, double deadline)
{
    for (;;) {
        double left = deadline - offnas_now();
        if (left <= 0)
            return 0;
        struct pollfd p = {fd, events, 0};
        int ms = left > 3600.0 ? 3600000 : (int)(left * 1000.0) + 1;
        int r = poll(&p, 1, ms);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return offnas_error("poll: %s", strerror(errno));
    }
}

int sock_connect(const struct sockaddr_in *addr, int timeout_ms)
{
    char text[64];
    sock_addr_text(addr, text, sizeof text);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return offnas_error("%s: socket: %s", text, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (sock_set_nonblocking(fd, 1))
        goto fail;
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) {
        if (errno != EINPROGRESS) {
            offnas_error("%s: cannot connect: %s", text, strerror(errno));
            goto fail;
        }
        int r = wait_ready(fd, POLLOUT, offnas_now() + timeout_ms / 1000.0);
        int err = 0;
        socklen_t len = sizeof err;
        if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            offnas_error("%s: cannot connect: %s", text,
                         r == 0 ? "timed out" : strerror(err ? err : errno));
            goto fail;
        }
    }
    if (sock_set_nonblocking(fd, 0))
        goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

int sock_send_all(int fd, const void *data, size_t len, double deadline)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_ready(fd, POLLOUT, deadline);
            if (r < 0)
                return -1;
            if (r == 0)
                return offnas_error("send: timed out");
            continue;
        }
        return offnas_error("send: %s", n == 0 ? "connection closed" : strerror(errno));
    }
    return 0;
}

/* Reads exactly len bytes before the deadline. */
static int recv_all(int fd, uint8_t *p, size_t len, double deadline, int mid_frame)
{
    while (len) {
        ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0)
            return offnas_error("the connection was closed%s", mid_frame ? " in mid-frame" : "");
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int r = wait_ready(fd, POLLIN, deadline);
            if (r < 0)
                return -1;
            if (r == 0)
                return offnas_error("receive: timed out");
            continue;
        }
        return offnas_error("receive: %s", strerror(errno));
    }
    return 0;
}

int sock_recv_frame(int fd, struct wire_header *h, struct wire_buf *payload, uint32_t max_payload,
                    double deadline)
{
    uint8_t hdr[WIRE_HEADER_BYTES];
    OFFNAS_TRY(recv_all(fd, hdr, 1, deadline, 0));
    OFFNAS_TRY(recv_all(fd, hdr + 1, sizeof hdr - 1, deadline, 1));
    int e = wire_decode_header(hdr, max_payload, h);
    if (e)
        return e;
    if (payload->cap < h->payload_bytes + 1) {
        uint8_t *grown = realloc(payload->data, h->payload_bytes + 1);
        if (!grown)
            return offnas_error("receive: out of memory for %u bytes", h->payload_bytes);
        payload->data = grown;
        payload->cap = h->payload_bytes + 1;
    }
    payload->len = h->payload_bytes;
    OFFNAS_TRY(recv_all(fd, payload->data, h->payload_bytes, deadline, 1));
    return wire_check_crc(h, payload->data);
}
