/* device: `offnas device-run`, the device half of a split model on test images at batch 1,
 * against an edge-serve over TCP: accuracy, bytes, and measured device / transfer / edge /
 * end-to-end milliseconds beside the prediction, into runtime.json (docs/formats.md).
 *
 * Per image: the device half and the encoding (device), then the frame out and the result
 * back (end-to-end minus device minus the edge's reported compute is the transfer). --rtt-ms
 * sleeps half the round trip before the send and half after the receive: the propagation
 * delay that tbf does not add. A dropped connection is re-opened once (and reported); the
 * request in flight is sent again. */
#ifndef OFFNAS_DEVICE_H
#define OFFNAS_DEVICE_H

#include "model.h"
#include "timing.h"

#include <netinet/in.h>
#include <stdio.h>

struct device_options {
    struct sockaddr_in server; /* unused when the model runs all on the device */
    const char *server_text;
    long images;      /* 0: the whole test split of the job */
    int warmup;       /* first images not timed */
    double rtt_ms;    /* added round trip */
    double timeout;   /* seconds for one request */
    int check;        /* also run the edge half here and compare every result with it */
    const char *out;  /* runtime.json */
    FILE *progress;   /* progress lines (NULL: none) */
};

struct device_report {
    long images, correct, timed, reconnects, checked, mismatches;
    double accuracy;
    double frame_bytes;  /* bytes of one TENSOR frame (header + payload), 0 all on device */
    double value_bytes;  /* of those, the values (what the prediction counts) */
    struct timing device, transfer, edge, total; /* over the timed images, ms */
    double seconds;
};

/* Runs the device side; writes o->out. Returns 0, or -1 with an error (cannot connect twice,
 * the server refused, a result of another request or shape, ...). */
int device_run(const struct runtime_model *rm, const struct device_options *o,
               struct device_report *r);

#endif
