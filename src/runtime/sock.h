/* sock: the TCP plumbing of the split runtime: addresses "HOST:PORT", a listening socket, a
 * connect with a deadline, and whole frames written and read with deadlines (blocking sockets
 * waited on with poll, for the device side and the tests). The edge server's event loop reads
 * frames itself (edge.c). */
#ifndef OFFNAS_SOCK_H
#define OFFNAS_SOCK_H

#include "wire.h"

#include <netinet/in.h>

/* Parses "HOST:PORT" (HOST a dotted IPv4 address or "localhost"; PORT 0..65535, 0 only when
 * allow_zero: any free port). what names the option in errors ("--listen"). */
int sock_parse_addr(const char *text, const char *what, int allow_zero, struct sockaddr_in *out);

/* "a.b.c.d:port" of addr into buf (at least 32 bytes). */
const char *sock_addr_text(const struct sockaddr_in *addr, char *buf, size_t size);

/* A non-blocking listening socket bound to addr (SO_REUSEADDR); *bound gets the address with
 * the port chosen when addr's port is 0. Returns the fd or -1 with an error. */
int sock_listen(const struct sockaddr_in *addr, int backlog, struct sockaddr_in *bound);

/* A connected blocking socket (TCP_NODELAY) within timeout_ms. Returns the fd or -1. */
int sock_connect(const struct sockaddr_in *addr, int timeout_ms);

/* Sets O_NONBLOCK on (1) or off (0). Returns 0 or -1 with an error. */
int sock_set_nonblocking(int fd, int on);

/* Writes len bytes before the deadline (offnas_now() seconds). Returns 0, or -1 with an error
 * ("timed out", "connection closed", the errno). */
int sock_send_all(int fd, const void *data, size_t len, double deadline);

/* Reads one whole frame before the deadline: header checked (payload at most max_payload),
 * payload into *payload (grown as needed), CRC checked. Returns 0; -1 with an error for a
 * closed connection, a timeout or a socket error; or the positive wire error of a bad frame. */
int sock_recv_frame(int fd, struct wire_header *h, struct wire_buf *payload, uint32_t max_payload,
                    double deadline);

#endif
