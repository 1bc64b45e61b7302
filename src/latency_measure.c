/* latency_measure: a latency table measured on this machine, the end-to-end timing of one
 * network, and the stamp (host, CPU, date) of a measured table; see latency_measure.h. */
#define _POSIX_C_SOURCE 200809L
#include "latency_measure.h"

#include "common.h"
#include "rng.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void latency_now_iso8601(char *buf, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "unknown");
}

/* CPU model from /proc/cpuinfo ("model name"), or "unknown". */
static void cpu_model(char *buf, size_t size)
{
    snprintf(buf, size, "unknown");
    FILE *in = fopen("/proc/cpuinfo", "r");
    if (!in)
        return;
    char line[512];
    while (fgets(line, sizeof line, in)) {
        if (strncmp(line, "model name", 10))
            continue;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        v[strcspn(v, "\r\n")] = 0;
        snprintf(buf, size, "%s", v);
        break;
    }
    fclose(in);
}

void latency_stamp_here(struct latency_table *t, int threads)
{
    t->threads = threads;
    snprintf(t->source, sizeof t->source, "measured");
    if (gethostname(t->host, sizeof t->host) != 0)
        snprintf(t->host, sizeof t->host, "unknown");
    t->host[sizeof t->host - 1] = 0;
    cpu_model(t->cpu, sizeof t->cpu);
    latency_now_iso8601(t->date, sizeof t->date);
}


/* One piece of a network to time: the stem, a block (layer, op), the head or all of it. */
enum piece_kind { PIECE_STEM, PIECE_BLOCK, PIECE_HEAD, PIECE_NETWORK };

struct piece {
    struct net *net;
    enum piece_kind kind;
    int layer, op;  /* of PIECE_BLOCK */
    const float *x; /* one input of the piece */
};

/* One batch-1 eval forward of the piece (a timing_run callback). */
static void run_piece(void *ctx)
{
    const struct piece *p = ctx;
    switch (p->kind) {
    case PIECE_STEM: net_run_stem(p->net, p->x, 1, 0); break;
    case PIECE_BLOCK: net_run_block(p->net, p->layer, p->op, p->x, 1, 0); break;
    case PIECE_HEAD: net_run_head(p->net, p->x, 1, 0); break;
    case PIECE_NETWORK: net_forward(p->net, p->x, 1, 0); break;
    }
}

/* Times one piece and stores its statistics as entry (slot, op) of t. */
static void time_piece(struct latency_table *t, int slot, struct piece piece, int warmup,
                       int repeats)
{
    struct timing timing = timing_run(run_piece, &piece, warmup, repeats);
    t->median[slot][piece.op] = timing.median;
    t->p10[slot][piece.op] = timing.p10;
    t->p90[slot][piece.op] = timing.p90;
    t->repeats[slot][piece.op] = timing.repeats;
}

struct timing latency_forward_timing(struct net *net, const float *x, int warmup, int repeats)
{
    struct piece whole = {.net = net, .kind = PIECE_NETWORK, .x = x};
    return timing_run(run_piece, &whole, warmup, repeats);
}

static void fill_normal(float *x, size_t n, struct rng *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(rng);
}

void latency_measure(struct latency_table *table, struct net *net, int warmup, int repeats)
{
    OFFNAS_ASSERT(net->batch >= 1 && repeats >= 1 && warmup >= 0);
    OFFNAS_ASSERT(table->slot_count == net->layer_count + 2);
    struct rng rng;
    rng_seed(&rng, 20210101, 0x6c6174);

    /* The largest input any piece reads, one image. */
    size_t most = (size_t)net->side * net->side * net->in_channels;
    for (int l = 0; l < net->layer_count; l++) {
        const struct net_layer *layer = &net->layers[l];
        size_t n = (size_t)layer->hin * layer->win * layer->cin;
        most = n > most ? n : most;
    }
    int last = net->layer_count - 1;
    int head_c = last >= 0 ? net->layers[last].cout : net->stem_channels;
    int head_hw = last >= 0 ? net->layers[last].hout : net->stem_side;
    size_t head_n = (size_t)head_hw * head_hw * head_c;
    most = head_n > most ? head_n : most;
    float *x = offnas_malloc(most * sizeof *x);

    double start = offnas_now();
    fill_normal(x, (size_t)net->side * net->side * net->in_channels, &rng);
    time_piece(table, 0, (struct piece){net, PIECE_STEM, 0, 0, x}, warmup, repeats);
    offnas_log("profile: stem %.4f ms", table->median[0][0]);
    for (int l = 0; l < net->layer_count; l++) {
        const struct net_layer *layer = &net->layers[l];
        fill_normal(x, (size_t)layer->hin * layer->win * layer->cin, &rng);
        double lo = INFINITY, hi = 0.0;
        for (int i = 0; i < layer->candidate_count; i++) {
            time_piece(table, l + 1, (struct piece){net, PIECE_BLOCK, l, i, x}, warmup, repeats);
            double m = table->median[l + 1][i];
            lo = m < lo ? m : lo;
            hi = m > hi ? m : hi;
        }
        offnas_log("profile: layer %d/%d (%d->%d, stride %d, %dx%d): %d ops, %.4f..%.4f ms", l + 1,
                   net->layer_count, layer->cin, layer->cout, layer->stride, layer->hin,
                   layer->win, layer->candidate_count, lo, hi);
    }
    fill_normal(x, head_n, &rng);
    time_piece(table, net->layer_count + 1, (struct piece){net, PIECE_HEAD, 0, 0, x}, warmup,
               repeats);
    offnas_log("profile: head %.4f ms (%.1f s in all)", table->median[net->layer_count + 1][0],
               offnas_now() - start);
    free(x);
}

