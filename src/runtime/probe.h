/* probe: a candidate partition measured for real, as the profiler ranks of a search do it (the
 * mobile rank runs the device half, the edge rank the edge half, over TCP in the runtime's
 * protocol). The networks are the profilers' supernets with the partition's ops chosen; their
 * weights need not be trained, only identical on both sides (the same job and seed), since
 * the hello's fingerprint covers them.
 *
 *     edge rank:   fd = sock_listen(...); probe_edge_serve(fd, net, &p, 60.0, &edge_ms);
 *     mobile rank: probe_device_run(&edge_addr, net, &p, 20, &result);
 *
 * Besides the partition's own tensors the device sends link probes (u8 tensors of 256 bytes,
 * of the partition's size and of four times it, at most 64 KB), which the edge echoes without
 * computing; from all the transfers the link is fitted by least squares:
 *     transfer_ms = rtt_ms + 8 * frame_bytes / (bandwidth_mbps * 1000). */
#ifndef OFFNAS_PROBE_H
#define OFFNAS_PROBE_H

#include "net.h"

#include <netinet/in.h>

struct probe_partition {
    int layers;
    int ops[NET_MAX_LAYERS]; /* candidate per layer */
    int split;               /* 1 .. layers: an inner split (the others need no link) */
    int kept;                /* channels sent: the first kept of the split layer's output */
    int format;              /* enum wire_format of the values (int8, fp16, fp32) */
};

struct probe_result {
    int samples;                             /* partition requests timed */
    double device_ms, transfer_ms, edge_ms;  /* medians */
    double total_ms;
    double frame_bytes;                      /* of the partition's tensor frame */
    int link_fitted;                         /* bandwidth and rtt below are set */
    double bandwidth_mbps, rtt_ms;
};

/* Edge side: waits up to timeout seconds for one device on listen_fd, checks its hello,
 * serves its tensors until it closes; *edge_ms gets the median compute time of the
 * partition's tensors (0 if none came). Returns 0, or -1 with an error. */
int probe_edge_serve(int listen_fd, struct net *net, const struct probe_partition *p,
                     double timeout, double *edge_ms);

/* Device side: connects to edge, runs the partition repeats times and the link probes.
 * Returns 0, or -1 with an error. */
int probe_device_run(const struct sockaddr_in *edge, struct net *net,
                     const struct probe_partition *p, int repeats, struct probe_result *r);

/* The least-squares line y = a + b x through n points; returns 0, or -1 if the x are all
 * equal (n < 2). */
int probe_fit_line(const double *x, const double *y, int n, double *a, double *b);

#endif
