/* edge: `offnas edge-serve`, the edge half of a split model served to many devices at once.
 *
 * Each of `threads` workers owns a network and runs an event loop (poll over non-blocking
 * sockets) on the shared listening socket: it accepts, reads frames incrementally, answers a
 * device's HELLO with its own (or ERROR mismatch), and each TENSOR with a RESULT (the logits and
 * the edge's compute time), in the order the requests came. A bad frame gets an ERROR reply
 * and that connection is closed once the reply is out; the others carry on. A frame begun
 * must be complete within read_timeout, a connection with nothing to do closes after
 * idle_timeout, connections beyond max_connections get ERROR busy. On edge_request_stop (the
 * SIGTERM/SIGINT handler calls it) the workers stop accepting and reading, send every answer
 * already computed (for up to 5 s), close, and edge_serve returns 0.
 *
 * Log, one line each on the log stream: the start, every connection when it closes (peer,
 * requests, errors, seconds, why it ended), the stop. */
#ifndef OFFNAS_EDGE_H
#define OFFNAS_EDGE_H

#include "model.h"

#include <netinet/in.h>
#include <stdio.h>

struct edge_options {
    struct sockaddr_in listen;
    int threads;          /* workers, each with its own network */
    int max_connections;  /* over all workers */
    double read_timeout;  /* seconds a begun frame may take */
    double idle_timeout;  /* seconds without a frame before a connection is closed */
    uint32_t max_frame;   /* payload bytes of one frame, at most */
    const char *ready_file; /* when listening, "ADDR:PORT\n" is written here (tests) */
    FILE *log;
};

/* What a run of edge_serve did. */
struct edge_stats {
    long connections, requests, errors, refused;
};

/* Serves rm until edge_request_stop. Returns 0, or -1 with an error (cannot listen, cannot
 * load a worker's network). */
int edge_serve(const struct runtime_model *rm, const struct edge_options *o,
               struct edge_stats *stats);

/* Async-signal-safe: asks edge_serve to finish and return. */
void edge_request_stop(void);

#endif
