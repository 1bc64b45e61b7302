/* Tests of the arch module: the parameter layout, E[T] against finite differences, brute-force
 * enumeration and exact networks, the signs of its gradient, Gumbel sampling frequencies,
 * derivation of the final architecture, and the straight-through task gradients.
 *
 * Fixture: the tiny space "4/1, 6/2, 6/1" (stem 4, head 8) with candidates k3e1, k3e3, skip
 * (skip only where shapes allow: 3, 2, 3 ops), input 8x8x3, two hand-filled latency tables
 * with distinct positive entries, and alpha, beta, gamma drawn from N(0, 1). Every reference
 * value is computed here in double from the tables, independently of src/arch.c. */
#include "testing.h"
#include "tiny.h"

#include "arch.h"
#include "common.h"
#include "job.h"
#include "latency.h"
#include "link.h"
#include "net.h"
#include "rng.h"

#include <stdlib.h>

#define IN_CHANNELS 3
#define SIDE 8

struct fixture {
    struct net *net;
    struct latency_table dev, edge;
    struct arch arch;
    struct arch_cost cost;
    int L;
};

static struct fixture F;

/* Fills F for seed and a cost configuration: 0 scale 1 wire 1 (int8); 1 device 1.7, edge 1.3,
 * wire 4 (fp32). Returns &F.arch. */
static struct arch *setup(uint64_t seed, int config)
{
    struct job job = test_job("net.layers=4/1, 6/2, 6/1;net.ops=k3e1, k3e3, k3e1;"
                              "net.candidates=k3e1, k3e3, skip;net.stem=4;net.head=8");
    F.net = net_create(&job.net, 1, SIDE, IN_CHANNELS, 10, 0, seed);
    CU_ASSERT_PTR_NOT_NULL_FATAL(F.net);
    F.L = F.net->layer_count;
    CU_ASSERT_EQUAL_FATAL(F.L, 3);

    struct rng rng;
    rng_seed(&rng, seed, 99);
    latency_table_init(&F.dev, F.net, "dev");
    latency_table_init(&F.edge, F.net, "edge");
    for (int j = 0; j < F.L + 2; j++) {
        int ops = (j == 0 || j == F.L + 1) ? 1 : F.net->layers[j - 1].candidate_count;
        for (int o = 0; o < ops; o++) {
            F.dev.median[j][o] = 1.0 + 5.0 * rng_uniform(&rng); /* distinct, 1..6 ms */
            F.edge.median[j][o] = 0.1 + 0.9 * rng_uniform(&rng); /* 0.1..1 ms */
        }
    }
    memset(&F.cost, 0, sizeof F.cost);
    F.cost.device = &F.dev;
    F.cost.edge = &F.edge;
    F.cost.device_scale = config == 0 ? 1.0 : 1.7;
    F.cost.edge_scale = config == 0 ? 1.0 : 1.3;
    snprintf(F.cost.link.name, sizeof F.cost.link.name, "custom");
    F.cost.link.bandwidth_mbps = config == 0 ? 1.0 : 8.0;
    F.cost.link.rtt_ms = config == 0 ? 3.0 : 1.5;
    F.cost.wire_bytes = config == 0 ? 1 : 4;

    arch_init(&F.arch, F.net, 0.0f);
    for (size_t i = 0; i < F.arch.count; i++)
        F.arch.params[i] = (float)rng_normal(&rng);
    return &F.arch;
}

static void teardown(void)
{
    arch_free(&F.arch);
    net_free(F.net);
    F.net = NULL;
}

/* ---- independent reference model --------------------------------------------------------- */

static int ref_ops(int l) /* l = 1..L */
{
    return F.net->layers[l - 1].candidate_count;
}

static void ref_softmax(const float *x, int n, double *y)
{
    double m = x[0], s = 0.0;
    for (int i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    for (int i = 0; i < n; i++)
        s += y[i] = exp((double)x[i] - m);
    for (int i = 0; i < n; i++)
        y[i] /= s;
}

static double ref_sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

static int ref_channels(int s) /* s = 1..L */
{
    return F.net->layers[s - 1].cout;
}

/* pi[l][o] (l = 1..L), p[s], q[s][c] from the current params. */
struct ref_probs {
    double pi[NET_MAX_LAYERS + 1][NET_MAX_CANDIDATES];
    double p[ARCH_MAX_SPLITS];
    double q[ARCH_MAX_SPLITS][64];
};

static void ref_probs(struct ref_probs *r)
{
    const struct arch *a = &F.arch;
    for (int l = 1; l <= F.L; l++)
        ref_softmax(a->params + a->alpha[l - 1], ref_ops(l), r->pi[l]);
    ref_softmax(a->params + a->beta, F.L + 2, r->p);
    for (int s = 1; s <= F.L; s++)
        for (int c = 0; c < ref_channels(s); c++)
            r->q[s][c] = ref_sigmoid(a->params[a->gamma[s] + c]);
}

static double ref_bytes(int s, double kept)
{
    if (s == 0)
        return (double)SIDE * SIDE * IN_CHANNELS;
    const struct net_layer *ly = &F.net->layers[s - 1];
    return (double)ly->hout * ly->wout * F.cost.wire_bytes * kept;
}

static double ref_transfer(int s, double kept)
{
    if (s == F.L + 1)
        return 0.0;
    return F.cost.link.rtt_ms + 8.0 * ref_bytes(s, kept) / (F.cost.link.bandwidth_mbps * 1e3);
}

/* Device runs slots 0..s (none for s = 0), the edge the rest. */
static int on_device(int slot, int s)
{
    return s > 0 && slot <= s;
}

/* Latency of one exact network (ops[l-1] for layer l), split s, kept channels. */
static struct arch_latency ref_exact(const int *ops, int s, int kept)
{
    struct arch_latency r = {0};
    for (int j = 0; j < F.L + 2; j++) {
        int o = (j == 0 || j == F.L + 1) ? 0 : ops[j - 1];
        if (on_device(j, s))
            r.device += F.dev.median[j][o] * F.cost.device_scale;
        else
            r.edge += F.edge.median[j][o] * F.cost.edge_scale;
    }
    r.transfer = ref_transfer(s, kept);
    r.total = r.device + r.transfer + r.edge;
    return r;
}

/* T(s) in expectation over ops and channels (pi, q), for a fixed split s. */
static double ref_split_T(const struct ref_probs *r, int s)
{
    double t = 0.0, kept = 0.0;
    for (int j = 0; j < F.L + 2; j++) {
        const struct latency_table *tab = on_device(j, s) ? &F.dev : &F.edge;
        double scale = on_device(j, s) ? F.cost.device_scale : F.cost.edge_scale;
        if (j == 0 || j == F.L + 1)
            t += tab->median[j][0] * scale;
        else
            for (int o = 0; o < ref_ops(j); o++)
                t += r->pi[j][o] * tab->median[j][o] * scale;
    }
    if (s >= 1 && s <= F.L)
        for (int c = 0; c < ref_channels(s); c++)
            kept += r->q[s][c];
    return t + ref_transfer(s, kept);
}

static void expect_rel(double got, double want, double rel, const char *what, int a, int b)
{
    double tol = rel * fabs(want) + 1e-12;
    if (!(fabs(got - want) <= tol))
        fprintf(stderr, "  %s [%d,%d]: got %.15g want %.15g (|diff| %.3g > %.3g)\n", what, a, b,
                got, want, fabs(got - want), tol);
    CU_ASSERT(fabs(got - want) <= tol);
}

/* ---- tests -------------------------------------------------------------------------------- */

/* arch_init: shape of the space, disjoint offsets covering params exactly, the initial values
 * (alpha 0, beta 0, gamma gamma_init), zeroed gradients and Adam moments, and the probability
 * accessors against softmax / sigmoid in double (1e-12). */
TEST(arch_init_layout)
{
    setup(1, 0);
    arch_free(&F.arch);
    arch_init(&F.arch, F.net, 0.3f);
    const struct arch *a = &F.arch;
    EXPECT_EQ_INT(a->layer_count, 3);
    EXPECT_EQ_INT(a->split_count, 5);
    EXPECT_EQ_INT(a->op_count[0], 3); /* k3e1, k3e3, skip */
    EXPECT_EQ_INT(a->op_count[1], 2); /* stride 2: no skip */
    EXPECT_EQ_INT(a->op_count[2], 3);
    EXPECT_EQ_INT(a->channels[1], 4);
    EXPECT_EQ_INT(a->channels[2], 6);
    EXPECT_EQ_INT(a->channels[3], 6);
    EXPECT_EQ_INT(a->channels[4], 0);
    EXPECT_EQ_INT(a->side[1], 8);
    EXPECT_EQ_INT(a->side[2], 4);
    EXPECT_EQ_INT(a->side[3], 4);
    EXPECT_NEAR(a->input_bytes, SIDE * SIDE * IN_CHANNELS, 0);
    EXPECT_EQ_INT(a->count, 3 + 2 + 3 + 5 + 4 + 6 + 6);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a->params);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a->grads);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a->adam_m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a->adam_v);
    int used[64] = {0};
    CU_ASSERT_FATAL(a->count <= 64);
    for (int l = 0; l < 3; l++)
        for (int o = 0; o < a->op_count[l]; o++) {
            CU_ASSERT_FATAL(a->alpha[l] + o < a->count);
            used[a->alpha[l] + o]++;
            EXPECT_NEAR(a->params[a->alpha[l] + o], 0.0f, 0);
        }
    for (int s = 0; s < 5; s++) {
        CU_ASSERT_FATAL(a->beta + s < a->count);
        used[a->beta + s]++;
        EXPECT_NEAR(a->params[a->beta + s], 0.0f, 0);
    }
    for (int s = 1; s <= 3; s++)
        for (int c = 0; c < a->channels[s]; c++) {
            CU_ASSERT_FATAL(a->gamma[s] + c < a->count);
            used[a->gamma[s] + c]++;
            EXPECT_NEAR(a->params[a->gamma[s] + c], 0.3f, 0);
        }
    for (size_t i = 0; i < a->count; i++) {
        EXPECT_EQ_INT(used[i], 1);
        EXPECT_NEAR(a->grads[i], 0.0f, 0);
        EXPECT_NEAR(a->adam_m[i], 0.0f, 0);
        EXPECT_NEAR(a->adam_v[i], 0.0f, 0);
    }

    /* probability accessors on random params */
    struct rng rng = test_rng(5);
    for (size_t i = 0; i < a->count; i++)
        a->params[i] = (float)rng_normal(&rng);
    struct ref_probs r;
    ref_probs(&r);
    double got[ARCH_MAX_SPLITS];
    for (int l = 1; l <= 3; l++) {
        arch_op_probs(a, l - 1, got);
        for (int o = 0; o < a->op_count[l - 1]; o++)
            EXPECT_NEAR(got[o], r.pi[l][o], 1e-12);
    }
    arch_split_probs(a, got);
    for (int s = 0; s < 5; s++)
        EXPECT_NEAR(got[s], r.p[s], 1e-12);
    for (int s = 1; s <= 3; s++)
        for (int c = 0; c < a->channels[s]; c++)
            EXPECT_NEAR(arch_keep_prob(a, s, c), r.q[s][c], 1e-12);
    teardown();
}

/* dE[T]/d(alpha, beta, gamma) against central differences in double of E[T]: each float param
 * moved by +-h (h = 1e-3), the step taken as the float difference actually applied. Tolerance
 * 1e-3 relative + 1e-6 absolute (ms per unit logit). Both cost configurations. Also: the call
 * ADDS scale * grad (buffer prefilled with 0.25, scale 2.5; float tolerance 1e-5 relative +
 * 1e-6), the result does not depend on grads being NULL, and total = device + transfer + edge. */
TEST(arch_latency_gradient_finite_differences)
{
    for (int config = 0; config < 2; config++) {
        struct arch *a = setup(11 + config, config);
        float *g = calloc(a->count, sizeof(float));
        float *g2 = malloc(a->count * sizeof(float));
        struct arch_latency e0 = arch_expected_latency(a, &F.cost, NULL, 1.0);
        struct arch_latency e1 = arch_expected_latency(a, &F.cost, g, 1.0);
        EXPECT_NEAR(e0.total, e1.total, 0);
        EXPECT_NEAR(e1.total, e1.device + e1.transfer + e1.edge, 1e-12 * e1.total);
        const double h = 1e-3;
        int bad = 0;
        for (size_t i = 0; i < a->count; i++) {
            float p = a->params[i];
            float pp = (float)(p + h), pm = (float)(p - h);
            a->params[i] = pp;
            double fp = arch_expected_latency(a, &F.cost, NULL, 1.0).total;
            a->params[i] = pm;
            double fm = arch_expected_latency(a, &F.cost, NULL, 1.0).total;
            a->params[i] = p;
            double fd = (fp - fm) / ((double)pp - (double)pm);
            double tol = 1e-3 * fabs(fd) + 1e-6;
            if (!(fabs(fd - g[i]) <= tol)) {
                fprintf(stderr, "  config %d param %zu: finite difference %.9g, gradient %.9g\n",
                        config, i, fd, g[i]);
                bad++;
            }
        }
        EXPECT_EQ_INT(bad, 0);

        for (size_t i = 0; i < a->count; i++)
            g2[i] = 0.25f;
        arch_expected_latency(a, &F.cost, g2, 2.5);
        for (size_t i = 0; i < a->count; i++)
            EXPECT_NEAR(g2[i], 0.25 + 2.5 * g[i], 1e-5 * fabs(2.5 * g[i]) + 1e-6);
        free(g);
        free(g2);
        teardown();
    }
}

/* E[T] and its three parts against brute force: the sum over every op combination, every split
 * and (for s = 1..L) every subset of the sent channels of P(ops) p(s) P(subset) T(network),
 * with T from the tables by the reference model above. Relative 1e-9 (double). */
TEST(arch_latency_matches_enumeration)
{
    for (int config = 0; config < 2; config++) {
        setup(21 + config, config);
        struct ref_probs r;
        ref_probs(&r);
        struct arch_latency want = {0};
        int ops[NET_MAX_LAYERS];
        int combos = ref_ops(1) * ref_ops(2) * ref_ops(3);
        for (int k = 0; k < combos; k++) {
            int rest = k;
            double pops = 1.0;
            for (int l = 1; l <= F.L; l++) {
                ops[l - 1] = rest % ref_ops(l);
                rest /= ref_ops(l);
                pops *= r.pi[l][ops[l - 1]];
            }
            for (int s = 0; s <= F.L + 1; s++) {
                int C = (s >= 1 && s <= F.L) ? ref_channels(s) : 0;
                for (int m = 0; m < (1 << C); m++) {
                    double psub = 1.0;
                    int kept = 0;
                    for (int c = 0; c < C; c++) {
                        int keep = (m >> c) & 1;
                        kept += keep;
                        psub *= keep ? r.q[s][c] : 1.0 - r.q[s][c];
                    }
                    double w = pops * r.p[s] * psub;
                    struct arch_latency t = ref_exact(ops, s, kept);
                    want.device += w * t.device;
                    want.transfer += w * t.transfer;
                    want.edge += w * t.edge;
                    want.total += w * t.total;
                }
            }
        }
        struct arch_latency got = arch_expected_latency(&F.arch, &F.cost, NULL, 1.0);
        expect_rel(got.total, want.total, 1e-9, "total", config, 0);
        expect_rel(got.device, want.device, 1e-9, "device", config, 0);
        expect_rel(got.transfer, want.transfer, 1e-9, "transfer", config, 0);
        expect_rel(got.edge, want.edge, 1e-9, "edge", config, 0);
        teardown();
    }
}

/* With one-hot alpha, beta, gamma (logits +-40: softmax and sigmoid saturate), E[T] equals
 * arch_network_latency of that exact network and the reference model (relative 1e-9, each part
 * too), for splits 0, 2 (middle) and L+1, several op choices and kept sets. For s = 0 and L+1
 * the kept argument is ignored (a nonsense 5 is passed). */
TEST(arch_latency_one_hot_is_exact_network)
{
    for (int config = 0; config < 2; config++) {
        struct arch *a = setup(31 + config, config);
        struct rng rng = test_rng(77 + config);
        const int splits[3] = {0, 2, 4};
        for (int trial = 0; trial < 4; trial++)
            for (int si = 0; si < 3; si++) {
                int s = splits[si];
                int ops[NET_MAX_LAYERS];
                for (int l = 0; l < F.L; l++) {
                    ops[l] = (int)rng_below(&rng, (uint64_t)a->op_count[l]);
                    for (int o = 0; o < a->op_count[l]; o++)
                        a->params[a->alpha[l] + o] = o == ops[l] ? 40.0f : -40.0f;
                }
                for (int t = 0; t < F.L + 2; t++)
                    a->params[a->beta + t] = t == s ? 40.0f : -40.0f;
                int kept_at[ARCH_MAX_SPLITS] = {0};
                for (int t = 1; t <= F.L; t++)
                    for (int c = 0; c < a->channels[t]; c++) {
                        int keep = (trial == 0) ? 1 : (trial == 1) ? 0 : (int)rng_below(&rng, 2);
                        kept_at[t] += keep;
                        a->params[a->gamma[t] + c] = keep ? 40.0f : -40.0f;
                    }
                int kept = (s >= 1 && s <= F.L) ? kept_at[s] : 5;
                struct arch_latency e = arch_expected_latency(a, &F.cost, NULL, 1.0);
                struct arch_latency n = arch_network_latency(a, &F.cost, ops, s, kept);
                struct arch_latency r = ref_exact(ops, s, kept);
                int tag = config * 100 + trial * 10 + s;
                expect_rel(e.total, r.total, 1e-9, "expected total vs reference", tag, 0);
                expect_rel(n.total, r.total, 1e-9, "network total vs reference", tag, 0);
                expect_rel(e.device, r.device, 1e-9, "expected device", tag, 0);
                expect_rel(n.device, r.device, 1e-9, "network device", tag, 0);
                expect_rel(e.transfer, r.transfer, 1e-9, "expected transfer", tag, 0);
                expect_rel(n.transfer, r.transfer, 1e-9, "network transfer", tag, 0);
                expect_rel(e.edge, r.edge, 1e-9, "expected edge", tag, 0);
                expect_rel(n.edge, r.edge, 1e-9, "network edge", tag, 0);
            }
        /* split L+1 sends nothing; split 0 sends the raw input (uint8, whatever the wire) */
        int ops0[NET_MAX_LAYERS] = {0};
        EXPECT_NEAR(arch_network_latency(a, &F.cost, ops0, F.L + 1, 3).transfer, 0.0, 0);
        EXPECT_NEAR(arch_network_latency(a, &F.cost, ops0, 0, 3).transfer,
                    F.cost.link.rtt_ms +
                        8.0 * SIDE * SIDE * IN_CHANNELS / (F.cost.link.bandwidth_mbps * 1e3),
                    1e-12);
        teardown();
    }
}

/* arch_sample at tau = 1 over 20000 draws: op frequencies per layer match softmax(alpha) and
 * split frequencies softmax(beta) within 0.015 absolute (binomial sd <= 0.0036). Channel keep
 * frequencies match sigmoid(gamma) within 0.015, measured per split s = 1..L with beta pinned
 * to s (+40) so every draw samples that mask. Structure of each sample: ops and split are the
 * argmax of their soft vectors, soft vectors sum to 1 (1e-5), mask is 0/1 with kept ones,
 * tau recorded. The same seed gives the same samples. */
TEST(arch_sample_frequencies)
{
    struct arch *a = setup(41, 0);
    struct ref_probs r;
    ref_probs(&r);
    const int N = 20000;
    static struct arch_sample smp, smp2;
    struct rng rng, rng2;
    rng_seed(&rng, 1234, 0);
    rng_seed(&rng2, 1234, 0);
    int op_hits[NET_MAX_LAYERS][NET_MAX_CANDIDATES] = {{0}};
    int split_hits[ARCH_MAX_SPLITS] = {0};
    int structure_bad = 0, repro_bad = 0;
    for (int n = 0; n < N; n++) {
        arch_sample(&smp, a, 1.0f, &rng);
        if (n < 200) {
            arch_sample(&smp2, a, 1.0f, &rng2);
            int same = smp.split == smp2.split && smp.kept == smp2.kept;
            for (int l = 0; l < F.L; l++)
                same = same && smp.ops[l] == smp2.ops[l] &&
                       !memcmp(smp.op_soft[l], smp2.op_soft[l], a->op_count[l] * sizeof(float));
            same = same && !memcmp(smp.split_soft, smp2.split_soft, 5 * sizeof(float));
            if (smp.split >= 1 && smp.split <= F.L)
                same = same &&
                       !memcmp(smp.mask, smp2.mask, a->channels[smp.split] * sizeof(float));
            repro_bad += !same;
        }
        for (int l = 0; l < F.L; l++) {
            CU_ASSERT_FATAL(smp.ops[l] >= 0 && smp.ops[l] < a->op_count[l]);
            op_hits[l][smp.ops[l]]++;
            double sum = 0.0;
            int best = 0;
            for (int o = 0; o < a->op_count[l]; o++) {
                sum += smp.op_soft[l][o];
                if (smp.op_soft[l][o] > smp.op_soft[l][best])
                    best = o;
            }
            structure_bad += fabs(sum - 1.0) > 1e-5 || best != smp.ops[l];
        }
        CU_ASSERT_FATAL(smp.split >= 0 && smp.split <= F.L + 1);
        split_hits[smp.split]++;
        double sum = 0.0;
        int best = 0;
        for (int s = 0; s < 5; s++) {
            sum += smp.split_soft[s];
            if (smp.split_soft[s] > smp.split_soft[best])
                best = s;
        }
        structure_bad += fabs(sum - 1.0) > 1e-5 || best != smp.split || smp.tau != 1.0f;
    }
    EXPECT_EQ_INT(structure_bad, 0);
    EXPECT_EQ_INT(repro_bad, 0);
    for (int l = 0; l < F.L; l++)
        for (int o = 0; o < a->op_count[l]; o++)
            EXPECT_NEAR((double)op_hits[l][o] / N, r.pi[l + 1][o], 0.015);
    for (int s = 0; s < 5; s++)
        EXPECT_NEAR((double)split_hits[s] / N, r.p[s], 0.015);

    for (int s = 1; s <= F.L; s++) {
        for (int t = 0; t < 5; t++)
            a->params[a->beta + t] = t == s ? 40.0f : -40.0f;
        int keep_hits[64] = {0};
        int bad = 0;
        for (int n = 0; n < N; n++) {
            arch_sample(&smp, a, 1.0f, &rng);
            CU_ASSERT_FATAL(smp.split == s);
            int ones = 0;
            for (int c = 0; c < a->channels[s]; c++) {
                bad += smp.mask[c] != 0.0f && smp.mask[c] != 1.0f;
                ones += smp.mask[c] == 1.0f;
                keep_hits[c] += smp.mask[c] == 1.0f;
            }
            bad += ones != smp.kept;
        }
        EXPECT_EQ_INT(bad, 0);
        for (int c = 0; c < a->channels[s]; c++)
            EXPECT_NEAR((double)keep_hits[c] / N, r.q[s][c], 0.015);
    }
    teardown();
}

/* Signs of dE[T]: the split with the lowest expected T(s) has a negative beta gradient; every
 * gamma gradient is positive (keeping more channels never lowers latency; p_s q (1-q) > 0 with
 * random params); at each layer the op of lowest expected cost has a non-positive alpha
 * gradient. Ten random draws, both configurations. */
TEST(arch_latency_gradient_signs)
{
    for (int trial = 0; trial < 10; trial++) {
        int config = trial % 2;
        struct arch *a = setup(51 + trial, config);
        struct ref_probs r;
        ref_probs(&r);
        float *g = calloc(a->count, sizeof(float));
        arch_expected_latency(a, &F.cost, g, 1.0);
        int best = 0;
        for (int s = 1; s <= F.L + 1; s++)
            if (ref_split_T(&r, s) < ref_split_T(&r, best))
                best = s;
        if (!(g[a->beta + best] < 0.0f))
            fprintf(stderr, "  trial %d: best split %d (T %.6g) beta gradient %.9g\n", trial, best,
                    ref_split_T(&r, best), g[a->beta + best]);
        CU_ASSERT(g[a->beta + best] < 0.0f);
        for (int s = 1; s <= F.L; s++)
            for (int c = 0; c < a->channels[s]; c++) {
                if (!(g[a->gamma[s] + c] > 0.0f))
                    fprintf(stderr, "  trial %d: gamma[%d][%d] gradient %.9g\n", trial, s, c,
                            g[a->gamma[s] + c]);
                CU_ASSERT(g[a->gamma[s] + c] > 0.0f);
            }
        /* op cost at layer l: P(l on device) T_dev + P(l on edge) T_edge */
        for (int l = 1; l <= F.L; l++) {
            double pdev = 0.0;
            for (int s = l; s <= F.L + 1; s++)
                pdev += r.p[s];
            int cheapest = 0;
            double cmin = INFINITY;
            for (int o = 0; o < ref_ops(l); o++) {
                double c = pdev * F.dev.median[l][o] * F.cost.device_scale +
                           (1.0 - pdev) * F.edge.median[l][o] * F.cost.edge_scale;
                if (c < cmin) {
                    cmin = c;
                    cheapest = o;
                }
            }
            CU_ASSERT(g[a->alpha[l - 1] + cheapest] <= 0.0f);
        }
        free(g);
        teardown();
    }
}

/* arch_derive returns the argmax op per layer, the argmax split and at that split the channels
 * with q > 0.5 (gamma > 0; gamma = 0 gives q = 0.5 exactly and is dropped; gamma = 1e-3 is
 * kept). Gamma at the other splits has the opposite sign, so reading the wrong split fails. */
TEST(arch_derive_argmax)
{
    struct arch *a = setup(61, 0);
    struct rng rng = test_rng(62);
    const int targets[4] = {2, 1, 0, 4};
    for (int k = 0; k < 4; k++) {
        int want_split = targets[k];
        int want_ops[NET_MAX_LAYERS];
        for (size_t i = 0; i < a->count; i++)
            a->params[i] = (float)rng_normal(&rng);
        for (int l = 0; l < F.L; l++) {
            want_ops[l] = (int)rng_below(&rng, (uint64_t)a->op_count[l]);
            float m = -1e9f;
            for (int o = 0; o < a->op_count[l]; o++)
                m = fmaxf(m, a->params[a->alpha[l] + o]);
            a->params[a->alpha[l] + want_ops[l]] = m + 0.5f;
        }
        float m = -1e9f;
        for (int s = 0; s < 5; s++)
            m = fmaxf(m, a->params[a->beta + s]);
        a->params[a->beta + want_split] = m + 0.5f;
        float want_mask[64];
        int want_kept = 0;
        for (int s = 1; s <= F.L; s++)
            for (int c = 0; c < a->channels[s]; c++) {
                int keep = (c * 7 + k) % 3 != 0;
                float v = (c == 1) ? 0.0f : (c == 2) ? 1e-3f : keep ? 0.8f : -0.8f;
                if (c == 1)
                    keep = 0;
                if (c == 2)
                    keep = 1;
                if (s == want_split) {
                    want_mask[c] = keep ? 1.0f : 0.0f;
                    want_kept += keep;
                } else {
                    v = -v + (c == 1 ? 1.0f : 0.0f); /* wrong split: opposite decisions */
                }
                a->params[a->gamma[s] + c] = v;
            }
        int ops[NET_MAX_LAYERS] = {0}, split = -1, kept = -1;
        float mask[NET_MAX_CHANNELS];
        for (int c = 0; c < NET_MAX_CHANNELS; c++)
            mask[c] = -7.0f;
        arch_derive(a, ops, &split, mask, &kept);
        for (int l = 0; l < F.L; l++)
            EXPECT_EQ_INT(ops[l], want_ops[l]);
        EXPECT_EQ_INT(split, want_split);
        if (want_split >= 1 && want_split <= F.L) {
            EXPECT_EQ_INT(kept, want_kept);
            for (int c = 0; c < a->channels[want_split]; c++)
                EXPECT_NEAR(mask[c], want_mask[c], 0);
        }
    }
    teardown();
}

/* The paired op gradient is unbiased: for a loss that is a sum over layers of a fixed cost per
 * op, L(path) = sum_l c[l][op_l], the mean of arch_paired_op_gradients over every pair of
 * paths (a, b), each weighted pi(a) pi(b), is the exact gradient of E_pi[L] in alpha:
 * pi_lo (c[l][o] - sum_o' pi_lo' c[l][o']). One layer at a time (the other layers' ops the same
 * in a and b, which the estimate must ignore); float64 sums, tolerance 1e-5 (float adds). */
TEST(arch_paired_op_gradients_are_unbiased)
{
    struct arch *a = setup(81, 0);
    struct rng rng = test_rng(82);
    double cost[NET_MAX_LAYERS][NET_MAX_CANDIDATES];
    for (int l = 0; l < F.L; l++)
        for (int o = 0; o < a->op_count[l]; o++)
            cost[l][o] = rng_normal(&rng);
    static struct arch_sample pa, pb;
    for (int l = 0; l < F.L; l++) {
        int n = a->op_count[l];
        double pi[NET_MAX_CANDIDATES], mean_cost = 0.0, got[NET_MAX_CANDIDATES] = {0};
        arch_op_probs(a, l, pi);
        for (int o = 0; o < n; o++)
            mean_cost += pi[o] * cost[l][o];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                memset(&pa, 0, sizeof pa);
                memset(&pb, 0, sizeof pb);
                pa.ops[l] = i;
                pb.ops[l] = j;
                for (size_t k = 0; k < a->count; k++)
                    a->grads[k] = 0.0f;
                /* the other layers' costs are common to both paths */
                double common = 1.5;
                arch_paired_op_gradients(a, &pa, common + cost[l][i], &pb, common + cost[l][j]);
                for (int m = 0; m < F.L; m++)
                    for (int o = 0; m != l && o < a->op_count[m]; o++)
                        CU_ASSERT_EQUAL(a->grads[a->alpha[m] + o], 0.0f);
                for (int o = 0; o < n; o++)
                    got[o] += pi[i] * pi[j] * a->grads[a->alpha[l] + o];
            }
        for (int o = 0; o < n; o++) {
            double want = pi[o] * (cost[l][o] - mean_cost);
            if (!(fabs(got[o] - want) <= 1e-5))
                fprintf(stderr, "  layer %d op %d: got %.9g want %.9g\n", l, o, got[o], want);
            CU_ASSERT(fabs(got[o] - want) <= 1e-5);
        }
    }
    teardown();
}

/* arch_task_gradients ADDS the straight-through gradients (buffer prefilled with 0.5):
 *   alpha[l][o] += gate_grad[l] * y_k (delta_ko - y_o) / tau, y = op_soft[l], k = ops[l];
 *   gamma[s][c] += mask_grad[c] * q (1 - q) at the sampled split s (nothing elsewhere);
 *   beta[t]     += G * y_s (delta_st - y_t) / tau, G = sum_c (mask[c] - 1) mask_grad[c],
 *                  y = split_soft (the split gate scales the effect of the mask).
 * gate_grad and mask_grad are set by hand. tau = 0.7; tolerance 1e-5 relative + 1e-6 absolute
 * (float). For a sample with split 0 or L+1: alpha as above, gamma untouched. */
TEST(arch_task_gradients_formulas)
{
    struct arch *a = setup(71, 1);
    struct rng rng = test_rng(72);
    static struct arch_sample smp;
    const float tau = 0.7f;
    int checked_inner = 0, checked_outer = 0;
    for (int attempt = 0; attempt < 200 && (checked_inner < 3 || checked_outer < 1); attempt++) {
        arch_sample(&smp, a, tau, &rng);
        int s = smp.split;
        int inner = s >= 1 && s <= F.L;
        if ((inner && checked_inner >= 3) || (!inner && checked_outer >= 1))
            continue;
        arch_apply(&smp, F.net);
        for (int l = 0; l < F.L; l++)
            F.net->gate_grad[l] = (float)rng_normal(&rng);
        for (int c = 0; c < NET_MAX_CHANNELS; c++)
            F.net->mask_grad[c] = 0.0f;
        if (inner)
            for (int c = 0; c < a->channels[s]; c++)
                F.net->mask_grad[c] = (float)rng_normal(&rng);
        for (size_t i = 0; i < a->count; i++)
            a->grads[i] = 0.5f;
        arch_task_gradients(a, &smp, F.net, 1);

        for (int l = 0; l < F.L; l++) {
            int k = smp.ops[l];
            for (int o = 0; o < a->op_count[l]; o++) {
                double y_k = smp.op_soft[l][k], y_o = smp.op_soft[l][o];
                double want = F.net->gate_grad[l] * y_k * ((o == k) - y_o) / smp.tau;
                double got = a->grads[a->alpha[l] + o] - 0.5;
                if (!(fabs(got - want) <= 1e-5 * fabs(want) + 1e-6))
                    fprintf(stderr, "  split %d alpha[%d][%d]: got %.9g want %.9g\n", s, l, o, got,
                            want);
                CU_ASSERT(fabs(got - want) <= 1e-5 * fabs(want) + 1e-6);
            }
        }
        for (int t = 1; t <= F.L; t++)
            for (int c = 0; c < a->channels[t]; c++) {
                double want = 0.0;
                if (t == s) {
                    double q = ref_sigmoid(a->params[a->gamma[t] + c]);
                    want = F.net->mask_grad[c] * q * (1.0 - q);
                }
                double got = a->grads[a->gamma[t] + c] - 0.5;
                if (!(fabs(got - want) <= 1e-5 * fabs(want) + 1e-6))
                    fprintf(stderr, "  split %d gamma[%d][%d]: got %.9g want %.9g\n", s, t, c, got,
                            want);
                CU_ASSERT(fabs(got - want) <= 1e-5 * fabs(want) + 1e-6);
            }
        if (inner) {
            double G = 0.0;
            for (int c = 0; c < a->channels[s]; c++)
                G += (smp.mask[c] - 1.0) * F.net->mask_grad[c];
            for (int t = 0; t < F.L + 2; t++) {
                double y_s = smp.split_soft[s], y_t = smp.split_soft[t];
                double want = G * y_s * ((t == s) - y_t) / smp.tau;
                double got = a->grads[a->beta + t] - 0.5;
                if (!(fabs(got - want) <= 1e-5 * fabs(want) + 1e-6))
                    fprintf(stderr, "  split %d beta[%d]: got %.9g want %.9g (G %.6g)\n", s, t,
                            got, want, G);
                CU_ASSERT(fabs(got - want) <= 1e-5 * fabs(want) + 1e-6);
            }
            checked_inner++;
        } else {
            checked_outer++;
        }
    }
    EXPECT_EQ_INT(checked_inner, 3);
    EXPECT_EQ_INT(checked_outer, 1);
    teardown();
}

/* arch_apply sets net->choice to the sampled ops and, for split s in 1..L, the mask on the output
 * of layer s-1 with the sample's mask; no mask for split 0 or L+1. */
TEST(arch_apply_sets_choices_and_mask)
{
    struct arch *a = setup(81, 0);
    struct rng rng = test_rng(82);
    static struct arch_sample smp;
    int seen[ARCH_MAX_SPLITS] = {0};
    for (int n = 0; n < 400; n++) {
        arch_sample(&smp, a, 1.0f, &rng);
        arch_apply(&smp, F.net);
        seen[smp.split]++;
        for (int l = 0; l < F.L; l++)
            EXPECT_EQ_INT(F.net->choice[l], smp.ops[l]);
        if (smp.split >= 1 && smp.split <= F.L) {
            EXPECT_EQ_INT(F.net->mask_layer, smp.split - 1);
            for (int c = 0; c < a->channels[smp.split]; c++)
                EXPECT_NEAR(F.net->mask[c], smp.mask[c], 0);
        } else {
            EXPECT_EQ_INT(F.net->mask_layer, -1);
        }
    }
    for (int s = 0; s < 5; s++)
        CU_ASSERT(seen[s] > 0);
    teardown();
}

/* jobs/camera.ini with its shipped device profile: for every op used in all layers (the cheapest,
 * k3e1, and the dearest among them), split 2 sending 3 of its 24 int8 channels beats all on the
 * device and all on the edge by more than 1 ms. The edge table is left at 0: the edge the job
 * measures (this machine x 0.1) adds under 0.5 ms to any split, which the 1 ms covers. */
TEST(arch_camera_job_predicts_a_split_inside)
{
    struct job job;
    job_defaults(&job);
    CU_ASSERT_EQUAL_FATAL(job_load(&job, OFFNAS_SOURCE_DIR "/jobs/camera.ini"), 0);
    CU_ASSERT_EQUAL_FATAL(job_finalize(&job), 0);
    struct net *net = net_create(&job.net, 1, job.data_resize, 1, 10, 0, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    static struct latency_table dev, edge;
    char path[JOB_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", OFFNAS_SOURCE_DIR, job.latency_device);
    int rc = latency_load(&dev, path, net);
    if (rc)
        fprintf(stderr, "%s\n", offnas_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    latency_table_init(&edge, net, "free edge");
    struct arch arch;
    arch_init(&arch, net, 0.0f);
    struct arch_cost cost = {.device = &dev, .edge = &edge,
                             .device_scale = job.latency_device_scale,
                             .edge_scale = job.latency_edge_scale};
    CU_ASSERT_EQUAL_FATAL(link_from_job(&cost.link, &job), 0);
    cost.wire_bytes = link_wire_bytes(job.search_wire);
    EXPECT_EQ_INT(arch.channels[2], 24);
    for (int o = 0; o < net->layers[0].candidate_count; o++) {
        int ops[NET_MAX_LAYERS];
        for (int l = 0; l < net->layer_count; l++)
            ops[l] = o;
        double inner = arch_network_latency(&arch, &cost, ops, 2, 3).total;
        double device = arch_network_latency(&arch, &cost, ops, net->layer_count + 1, 0).total;
        double edge_only = arch_network_latency(&arch, &cost, ops, 0, 0).total;
        if (inner + 1.0 >= device || inner + 1.0 >= edge_only)
            fprintf(stderr, "op %d: split 2 %.3f ms, all on device %.3f, all on edge %.3f\n", o,
                    inner, device, edge_only);
        CU_ASSERT(inner + 1.0 < device);
        CU_ASSERT(inner + 1.0 < edge_only);
    }
    arch_free(&arch);
    net_free(net);
}

/* search.t_ref = fastest: arch_fastest_split_latency is min over s of the reference T(s) in
 * expectation over pi and q (relative 1e-9) at the split that attains it, and with the split
 * pinned (search.split = device) it is that split's T(s) whatever the others cost. */
TEST(arch_fastest_split_latency_is_the_minimum_over_splits)
{
    for (int config = 0; config < 2; config++) {
        setup(41 + config, config);
        struct ref_probs r;
        ref_probs(&r);
        double want = INFINITY;
        int want_split = -1;
        for (int s = 0; s <= F.L + 1; s++)
            if (ref_split_T(&r, s) < want) {
                want = ref_split_T(&r, s);
                want_split = s;
            }
        int split;
        double got = arch_fastest_split_latency(&F.arch, &F.cost, &split);
        expect_rel(got, want, 1e-9, "fastest", config, want_split);
        EXPECT_EQ_INT(split, want_split);
        EXPECT_EQ_INT(arch_pinned_split(&F.arch), -1);
        int slowest = 0;
        for (int s = 0; s <= F.L + 1; s++)
            if (ref_split_T(&r, s) > ref_split_T(&r, slowest))
                slowest = s;
        arch_fix_split(&F.arch, slowest);
        EXPECT_EQ_INT(arch_pinned_split(&F.arch), slowest);
        got = arch_fastest_split_latency(&F.arch, &F.cost, &split);
        expect_rel(got, ref_split_T(&r, slowest), 1e-9, "pinned", config, slowest);
        EXPECT_EQ_INT(split, slowest);
        teardown();
    }
}

static const struct test_case TESTS[] = {
    CASE(arch_fastest_split_latency_is_the_minimum_over_splits),
    CASE(arch_init_layout),
    CASE(arch_latency_gradient_finite_differences),
    CASE(arch_latency_matches_enumeration),
    CASE(arch_latency_one_hot_is_exact_network),
    CASE(arch_sample_frequencies),
    CASE(arch_latency_gradient_signs),
    CASE(arch_derive_argmax),
    CASE(arch_task_gradients_formulas),
    CASE(arch_paired_op_gradients_are_unbiased),
    CASE(arch_apply_sets_choices_and_mask),
    CASE(arch_camera_job_predicts_a_split_inside),
};

TEST_MAIN("arch", TESTS)
