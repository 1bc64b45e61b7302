/* split: the device and edge halves of a derived network (see split.h). */
#include "split.h"

#include "common.h"

#include <stdlib.h>
#include <string.h>

int split_half_init(struct split_half *h, struct net *net, int split, const float *mask)
{
    memset(h, 0, sizeof *h);
    const int L = net->layer_count;
    if (split < 0 || split > L + 1)
        return offnas_error("split: %d is not in 0..%d", split, L + 1);
    h->net = net;
    h->split = split;
    net->mask_layer = -1;
    if (split == 0) {
        h->height = h->width = net->side;
        h->total = net->in_channels;
    } else if (split <= L) {
        h->height = h->width = net_out_side(net, split);
        h->total = net_out_channels(net, split);
    }
    for (int c = 0; c < h->total; c++)
        if (split == 0 || split > L || !mask || mask[c] != 0.0f)
            h->channels[h->kept++] = (uint16_t)c;
    if (split >= 1 && split <= L && h->kept == 0)
        return offnas_error("split: the mask of split %d keeps none of its %d channels", split,
                            h->total);
    size_t pixels = (size_t)h->height * h->width;
    h->sent = offnas_calloc(pixels * (h->kept ? h->kept : 1), sizeof(float));
    h->full = offnas_calloc(pixels * (h->total ? h->total : 1), sizeof(float));
    return 0;
}

void split_half_free(struct split_half *h)
{
    free(h->sent);
    free(h->full);
    h->sent = h->full = NULL;
}

const float *split_device_forward(struct split_half *h, const float *x)
{
    struct net *net = h->net;
    const int L = net->layer_count, s = h->split;
    const size_t pixels = (size_t)h->height * h->width;
    if (s == 0) {
        memcpy(h->sent, x, pixels * h->kept * sizeof(float));
        return h->sent;
    }
    net_run_stem(net, x, 1, 0);
    const float *y = net->stem_y;
    for (int l = 0; l < (s <= L ? s : L); l++)
        y = net_run_block(net, l, net->choice[l], y, 1, 0);
    if (s == L + 1) {
        net_run_head(net, y, 1, 0);
        return NULL;
    }
    for (size_t p = 0; p < pixels; p++) // y is (pixels, total)
        for (int k = 0; k < h->kept; k++)
            h->sent[p * h->kept + k] = y[p * h->total + h->channels[k]];
    return h->sent;
}

void split_edge_forward(struct split_half *h, const float *sent)
{
    struct net *net = h->net;
    const int L = net->layer_count, s = h->split;
    OFFNAS_ASSERT(s <= L);
    const size_t pixels = (size_t)h->height * h->width;
    if (s == 0) {
        net_forward(net, sent, 1, 0);
        return;
    }
    memset(h->full, 0, pixels * h->total * sizeof(float));
    for (size_t p = 0; p < pixels; p++)
        for (int k = 0; k < h->kept; k++)
            h->full[p * h->total + h->channels[k]] = sent[p * h->kept + k];
    const float *y = h->full;
    for (int l = s; l < L; l++)
        y = net_run_block(net, l, net->choice[l], y, 1, 0);
    net_run_head(net, y, 1, 0);
}
