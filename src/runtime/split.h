/* split: the two halves of a derived network, as the split runtime runs them (DESIGN.md, "The
 * split runtime"). The device half runs the stem and layers 1..s on one image and gathers the
 * kept channels of layer s's output; the edge half scatters them back into the full feature map
 * (zeros where a channel was not sent, exactly what the channel mask did in training) and runs
 * layers s+1..L and the head. Together they compute what net_forward computes with the mask.
 *
 *     struct split_half h;
 *     split_half_init(&h, net, split, mask);            // net: a fixed network, batch >= 1
 *     const float *sent = split_device_forward(&h, x);  // (h.height, h.width, h.kept)
 *     split_edge_forward(&h, sent);                     // logits in net->logits (1, classes)
 *
 * Split 0 sends the input (all its channels); split L + 1 sends nothing and the device half
 * computes the logits. No MPI, no allocation per image. */
#ifndef OFFNAS_SPLIT_H
#define OFFNAS_SPLIT_H

#include "net.h"

#include <stdint.h>

struct split_half {
    struct net *net;     /* the caller's; one image at a time, eval mode */
    int split;           /* 0 .. L + 1 */
    int height, width;   /* of the feature map sent (the input at split 0) */
    int total, kept;     /* its channels, and how many are sent */
    uint16_t channels[NET_MAX_CHANNELS]; /* the kept ones, increasing */
    float *sent;         /* (height, width, kept) */
    float *full;         /* (height, width, total): the edge's scatter buffer */
};

/* Prepares the halves of net at split (0 .. net->layer_count + 1). mask (total values, 0 or 1)
 * lists the channels sent at an inner split; NULL sends them all (and is what splits 0 and
 * L + 1 take). Sets net->mask_layer to -1: the halves apply the mask themselves. Returns 0, or
 * -1 with an error for a split out of range or a mask that keeps no channel. */
int split_half_init(struct split_half *h, struct net *net, int split, const float *mask);
void split_half_free(struct split_half *h);

/* The device half on one image x (side, side, in_channels): returns the values to send,
 * (height, width, kept) in h->sent; at split L + 1 returns NULL and the logits are in
 * net->logits. */
const float *split_device_forward(struct split_half *h, const float *x);

/* The edge half on the values the device sent ((height, width, kept), as returned by
 * split_device_forward): the logits go to net->logits (1, classes). Not for split L + 1. */
void split_edge_forward(struct split_half *h, const float *sent);

#endif
