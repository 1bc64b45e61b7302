/* Tests of the latency module: search-space fingerprints, profile files and the refusals of
 * bad ones, the cost model fitted to a CSV, measurement on a tiny net, network presets. */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "testing.h"
#include "tiny.h"

#include "common.h"
#include "h5.h"
#include "job.h"
#include "latency.h"
#include "net.h"
#include "op.h"
#include "rng.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static struct net *tiny_net(const char *extra, uint64_t seed)
{
    struct job job = tiny_job(extra);
    struct net *net = net_create(&job, 1, job.data_resize, 1, 10, 0, seed);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    return net;
}

/* A table for net with distinct, non-round values in every entry. */
static void fill_table(struct latency_table *t, const struct net *net)
{
    latency_table_init(t, net, "tiny-device");
    snprintf(t->host, sizeof t->host, "host-1");
    snprintf(t->cpu, sizeof t->cpu, "Some CPU @ 2.0GHz");
    snprintf(t->date, sizeof t->date, "2024-05-06T07:08:09Z");
    snprintf(t->source, sizeof t->source, "measured");
    t->threads = 3;
    t->version = 7;
    struct rng rng;
    rng_seed(&rng, 5, 0);
    for (int s = 0; s < t->slot_count; s++)
        for (int i = 0; i < t->op_count[s]; i++) {
            double m = 0.01 + fabs(rng_normal(&rng)) / 3.0;
            t->p10[s][i] = m * 0.9;
            t->median[s][i] = m;
            t->p90[s][i] = m * 1.1 + 1e-17;
            t->repeats[s][i] = 50 + s + i;
        }
}

TEST(fingerprint_changes_only_with_the_space)
{
    char text[4096];
    struct net *base = tiny_net(NULL, 1);
    uint64_t fp = latency_fingerprint(base, text, sizeof text);
    EXPECT_CONTAINS(text, "side=12;in=1;classes=10;stem=4;layers=6/1,8/2,8/1;ops=");
    EXPECT_CONTAINS(text, "ops=k3e1|k5e3|k3e3,k3e1|k5e3|k3e3,k3e1|k5e3|k3e3|skip;head");
    EXPECT_CONTAINS(text, ";head=10");
    /* not the space: seed, fixed ops, training and search settings */
    const char *same[] = {NULL, "net.ops=k3e3, k3e3, k5e3", "train.lr=0.1", "search.lambda=2",
                          "network.preset=wifi", "net.stem_stride=1"};
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(same); i++) {
        struct net *net = tiny_net(same[i], 99);
        EXPECT_EQ_INT(latency_fingerprint(net, NULL, 0) == fp, 1);
        net_free(net);
    }
    /* the space: layers, candidates (set or order), side, stem, head */
    const char *differ[] = {"net.layers=6/1, 8/2, 8/2", "net.layers=6/1, 8/2, 8/1, 8/1;net.ops=k3e1, k5e3, k3e3, skip",
                            "net.candidates=k3e1, k5e3, skip", "net.candidates=k5e3, k3e1, k3e3, skip",
                            "data.resize=14", "net.stem=5", "net.head=11", "net.stem_stride=2"};
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(differ); i++) {
        struct net *net = tiny_net(differ[i], 1);
        if (latency_fingerprint(net, NULL, 0) == fp)
            fprintf(stderr, "fingerprint unchanged by %s\n", differ[i]);
        CU_ASSERT(latency_fingerprint(net, NULL, 0) != fp);
        net_free(net);
    }
    /* classes and input channels are part of the space too */
    struct job job = tiny_job(NULL);
    struct net *rgb = net_create(&job, 1, 12, 3, 10, 0, 1);
    struct net *more = net_create(&job, 1, 12, 1, 100, 0, 1);
    CU_ASSERT(latency_fingerprint(rgb, NULL, 0) != fp);
    CU_ASSERT(latency_fingerprint(more, NULL, 0) != fp);
    net_free(rgb);
    net_free(more);
    net_free(base);
}

/* A stride-2 stem is written as stem=4/2; stride 1 writes nothing, so the default space keeps
 * the fingerprint the shipped profiles were made with (profiles/README.md). */
TEST(fingerprint_names_the_stem_stride_only_when_not_1)
{
    char text[4096];
    struct net *two = tiny_net("net.stem_stride=2", 1);
    latency_fingerprint(two, text, sizeof text);
    EXPECT_CONTAINS(text, ";stem=4/2;layers=6/1,8/2,8/1;");
    net_free(two);

    struct job job;
    job_defaults(&job);
    CU_ASSERT_EQUAL_FATAL(job_finalize(&job), 0);
    struct net *def = net_create(&job, 1, job.data_resize, 1, 10, 0, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(def);
    latency_fingerprint(def, text, sizeof text);
    EXPECT_CONTAINS(text, "side=28;in=1;classes=10;stem=16;layers=16/1,24/2,");
    CU_ASSERT(latency_fingerprint(def, NULL, 0) == 0xf563fb2f9cd78fa3ULL);
    net_free(def);
}

TEST(table_init_has_the_space_shape)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    latency_table_init(&t, net, "dev");
    EXPECT_EQ_INT(t.slot_count, 5);
    EXPECT_EQ_INT(t.op_count[0], 1);
    EXPECT_EQ_INT(t.op_count[1], 3); /* 4->6 channels: no skip */
    EXPECT_EQ_INT(t.op_count[2], 3); /* stride 2: no skip */
    EXPECT_EQ_INT(t.op_count[3], 4); /* 8->8 stride 1: skip */
    EXPECT_EQ_INT(t.op_count[4], 1);
    CU_ASSERT_STRING_EQUAL(t.device, "dev");
    net_free(net);
}

TEST(save_load_round_trip_is_bit_exact)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t, back;
    fill_table(&t, net);
    t.fit_mape = 7.25;
    t.fit_rmse_ms = 0.0123456789;
    const char *path = temp_path("round.h5");
    CU_ASSERT_EQUAL_FATAL(latency_save(&t, path), 0);
    memset(&back, 0xab, sizeof back);
    int rc = latency_load(&back, path, net);
    if (rc)
        fprintf(stderr, "%s\n", offnas_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(back.device, t.device);
    CU_ASSERT_STRING_EQUAL(back.host, t.host);
    CU_ASSERT_STRING_EQUAL(back.cpu, t.cpu);
    CU_ASSERT_STRING_EQUAL(back.date, t.date);
    CU_ASSERT_STRING_EQUAL(back.source, t.source);
    CU_ASSERT_STRING_EQUAL(back.space, t.space);
    EXPECT_EQ_INT(back.threads, 3);
    EXPECT_EQ_INT(back.version, 7);
    CU_ASSERT(back.fingerprint == t.fingerprint);
    EXPECT_EQ_INT(back.slot_count, t.slot_count);
    CU_ASSERT(back.fit_mape == t.fit_mape && back.fit_rmse_ms == t.fit_rmse_ms);
    for (int s = 0; s < t.slot_count; s++) {
        EXPECT_EQ_INT(back.op_count[s], t.op_count[s]);
        for (int i = 0; i < t.op_count[s]; i++) {
            CU_ASSERT(memcmp(&back.median[s][i], &t.median[s][i], sizeof(double)) == 0);
            CU_ASSERT(memcmp(&back.p10[s][i], &t.p10[s][i], sizeof(double)) == 0);
            CU_ASSERT(memcmp(&back.p90[s][i], &t.p90[s][i], sizeof(double)) == 0);
            EXPECT_EQ_INT(back.repeats[s][i], t.repeats[s][i]);
        }
    }
    /* a measured table (no fit) reads back as "not a fit" */
    t.fit_mape = t.fit_rmse_ms = -1;
    CU_ASSERT_EQUAL_FATAL(latency_save(&t, path), 0);
    CU_ASSERT_EQUAL_FATAL(latency_load(&back, path, net), 0);
    CU_ASSERT(back.fit_mape == -1 && back.fit_rmse_ms == -1);
    net_free(net);
}

/* Saves t to path and expects latency_load against net to fail with both parts in the message. */
static void expect_refused(const struct latency_table *t, const char *name, const struct net *net,
                           const char *part)
{
    const char *path = temp_path(name);
    char copy[256];
    snprintf(copy, sizeof copy, "%s", path);
    CU_ASSERT_EQUAL_FATAL(latency_save(t, copy), 0);
    struct latency_table back;
    CU_ASSERT_EQUAL(latency_load(&back, copy, net), -1);
    EXPECT_CONTAINS(offnas_last_error(), copy);
    EXPECT_CONTAINS(offnas_last_error(), part);
    CU_ASSERT(strchr(offnas_last_error(), '\n') == NULL);
}

TEST(load_refuses_wrong_fingerprint)
{
    struct net *net = tiny_net(NULL, 1), *other = tiny_net("net.candidates=k3e1, k5e3, skip", 1);
    struct latency_table t;
    fill_table(&t, other);
    char want[256];
    snprintf(want, sizeof want, "made for another search space (fingerprint %016llx, this job "
             "%016llx)", (unsigned long long)t.fingerprint,
             (unsigned long long)latency_fingerprint(net, NULL, 0));
    expect_refused(&t, "other.h5", net, want);
    net_free(net);
    net_free(other);
}

TEST(load_refuses_missing_entry)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    fill_table(&t, net);
    t.op_count[3] = 3; /* the file lacks (slot 3, op 3), the skip of the last layer */
    expect_refused(&t, "missing.h5", net, "no entry for (slot 3, op 3) (skip)");
    net_free(net);
}

TEST(load_refuses_nan_value)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    fill_table(&t, net);
    t.median[2][1] = NAN;
    expect_refused(&t, "nan.h5", net, "(slot 2, op 1): median_ms is nan");
    net_free(net);
}

TEST(load_refuses_negative_value)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    fill_table(&t, net);
    t.p10[1][0] = -0.5;
    expect_refused(&t, "negative.h5", net, "(slot 1, op 0): p10_ms is -0.5");
    net_free(net);
}

TEST(load_refuses_infinite_value)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    fill_table(&t, net);
    t.p90[4][0] = INFINITY;
    expect_refused(&t, "inf.h5", net, "(slot 4, op 0): p90_ms is inf");
    net_free(net);
}

TEST(load_refuses_missing_file)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    const char *path = temp_path("does-not-exist.h5");
    CU_ASSERT_EQUAL(latency_load(&t, path, net), -1);
    EXPECT_CONTAINS(offnas_last_error(), path);
    net_free(net);
}

TEST(load_refuses_wrong_data_set_lengths)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    fill_table(&t, net);
    const char *path = temp_path("lengths.h5");
    char keep[256];
    snprintf(keep, sizeof keep, "%s", path);
    char tmp[H5_PATH_MAX], fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)t.fingerprint);
    hid_t f = h5_create_tmp(keep, tmp, sizeof tmp);
    CU_ASSERT_FATAL(f >= 0);
    int32_t slot[3] = {0, 1, 1}, op[3] = {0, 0, 1}, rep[3] = {1, 1, 1};
    double ms[3] = {0.1, 0.2, 0.3};
    hsize_t three[1] = {3}, two[1] = {2};
    CU_ASSERT_EQUAL_FATAL(h5_attr_set_string(f, "device", "d") ||
                              h5_attr_set_string(f, "host", "h") ||
                              h5_attr_set_string(f, "cpu", "c") ||
                              h5_attr_set_string(f, "date", "x") ||
                              h5_attr_set_string(f, "source", "measured") ||
                              h5_attr_set_string(f, "fingerprint", fp) ||
                              h5_attr_set_string(f, "space", t.space) ||
                              h5_attr_set_int(f, "threads", 1) || h5_attr_set_int(f, "version", 0) ||
                              h5_write(f, "slot", H5_I32, 1, three, slot, 0) ||
                              h5_write(f, "op", H5_I32, 1, three, op, 0) ||
                              h5_write(f, "repeats", H5_I32, 1, three, rep, 0) ||
                              h5_write(f, "median_ms", H5_F64, 1, three, ms, 0) ||
                              h5_write(f, "p10_ms", H5_F64, 1, two, ms, 0) ||
                              h5_write(f, "p90_ms", H5_F64, 1, three, ms, 0),
                          0);
    CU_ASSERT_EQUAL_FATAL(h5_commit(f, tmp, keep), 0);
    CU_ASSERT_EQUAL(latency_load(&t, keep, net), -1);
    EXPECT_CONTAINS(offnas_last_error(), keep);
    EXPECT_CONTAINS(offnas_last_error(), "/p10_ms has 2 entries, /slot has 3");
    net_free(net);
}

TEST(shipped_profiles_load_for_the_default_space)
{
    struct job job;
    job_defaults(&job);
    CU_ASSERT_EQUAL_FATAL(job_finalize(&job), 0);
    struct net *net = net_create(&job, 1, job.data_resize, 1, 10, 0, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    const char *phones[] = {"pixel1", "pixel4", "pixel6", "xiaomi11"};
    for (size_t p = 0; p < OFFNAS_ARRAY_LEN(phones); p++) {
        char path[512];
        snprintf(path, sizeof path, "%s/profiles/%s.h5", OFFNAS_SOURCE_DIR, phones[p]);
        struct latency_table t;
        int rc = latency_load(&t, path, net);
        if (rc)
            fprintf(stderr, "%s\n", offnas_last_error());
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_STRING_EQUAL(t.device, phones[p]);
        EXPECT_CONTAINS(t.source, "fit: ");
        CU_ASSERT(t.fit_mape > 0 && t.fit_mape < 30);
        /* the fixed network costs a few milliseconds at most on a phone, more than nothing */
        double total = t.median[0][0] + t.median[net->layer_count + 1][0];
        for (int l = 0; l < net->layer_count; l++)
            total += t.median[l + 1][net_find_candidate(net, l, &job.fixed_ops[l])];
        CU_ASSERT(total > 0.1 && total < 10);
    }
    net_free(net);
}

/* ---- the fitted model --------------------------------------------------------------------- */

static const double TRUE_COEF[LATENCY_FIT_TERMS] = {1.1e-7, 3.3e-7, 2.2e-8, 0.05};
static const double TRUE_STEM[2] = {2.3e-7, 0.01};

static const char CSV_HEADER[] = "device,op_type,input_h,input_w,in_channels,out_channels,"
                                 "expand_ratio,kernel,stride,se,act,v_scale,norm,latency_ms,key\n";

/* A CSV like the nn-Meter ones whose block and stem latencies follow the true model exactly,
 * plus rows the fit must ignore (SE blocks, attention). */
static void write_synthetic_csv(const char *path)
{
    FILE *out = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    fputs(CSV_HEADER, out);
    const int sides[] = {16, 24, 32, 48}, chans[] = {16, 24, 48}, exps[] = {1, 3, 6};
    int n = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 3; c++)
                for (int e = 0; e < 3; e++)
                    for (int k = 3; k <= 5; k += 2)
                        for (int s = 1; s <= 2; s++) {
                            int h = sides[a], ci = chans[b], co = chans[(b + c) % 3];
                            double f[LATENCY_FIT_TERMS], ms = 0;
                            latency_block_features(f, h, h / s, ci, co, exps[e], k);
                            for (int t = 0; t < LATENCY_FIT_TERMS; t++)
                                ms += TRUE_COEF[t] * f[t];
                            fprintf(out, "phone,conv,%d,%d,%d,%d,%d,%d,%d,0,hard_swish,-1,na,%.17g,"
                                    "k%d\n", h, h, ci, co, exps[e], k, s, ms, n++);
                            if (n % 7 == 0)
                                fprintf(out, "phone,conv,%d,%d,%d,%d,%d,%d,%d,1,hard_swish,-1,na,"
                                        "99,se%d\n", h, h, ci, co, exps[e], k, s, n);
                        }
    for (int h = 128; h <= 256; h += 32)
        for (int co = 16; co <= 24; co += 8) {
            double macs = (double)(h / 2) * (h / 2) * 9 * 3 * co;
            fprintf(out, "phone,firstconv,%d,%d,3,%d,-1,3,2,-1,na,-1,na,%.17g,fc%d_%d\n", h, h, co,
                    TRUE_STEM[0] * macs + TRUE_STEM[1], h, co);
        }
    fputs("phone,transattn,7,7,64,64,-1,-1,-1,-1,hard_swish,2,ln,123.5,attn\n", out);
    fclose(out);
}

TEST(fit_recovers_known_coefficients)
{
    char path[256];
    snprintf(path, sizeof path, "%s", temp_path("synthetic.csv"));
    write_synthetic_csv(path);
    struct latency_fit fit;
    int rc = latency_fit_csv(&fit, path);
    if (rc)
        fprintf(stderr, "%s\n", offnas_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    for (int t = 0; t < LATENCY_FIT_TERMS; t++)
        EXPECT_NEAR(fit.coef[t], TRUE_COEF[t], 0.01 * TRUE_COEF[t]);
    EXPECT_NEAR(fit.stem_coef[0], TRUE_STEM[0], 0.01 * TRUE_STEM[0]);
    EXPECT_NEAR(fit.stem_coef[1], TRUE_STEM[1], 0.01 * TRUE_STEM[1]);
    int blocks = 4 * 3 * 3 * 3 * 2 * 2;
    EXPECT_EQ_INT(fit.train_rows + fit.test_rows, blocks);
    EXPECT_EQ_INT(fit.test_rows, blocks / 5);
    EXPECT_EQ_INT(fit.stem_rows, 10);
    CU_ASSERT(fit.mape < 1e-6 && fit.rmse_ms < 1e-9);
    CU_ASSERT_STRING_EQUAL(fit.device, "phone");
    EXPECT_CONTAINS(fit.source, "fit: ");
    EXPECT_CONTAINS(fit.source, "synthetic.csv");
}

TEST(fit_drops_a_negative_coefficient)
{
    /* latency without any per-byte cost and a negative-leaning offset: the clamped fit must
     * keep every coefficient >= 0 */
    char path[256];
    snprintf(path, sizeof path, "%s", temp_path("negative.csv"));
    FILE *out = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    fputs(CSV_HEADER, out);
    for (int i = 0; i < 60; i++) {
        int h = 16 + 8 * (i % 5), ci = 16 + 8 * (i % 3), e = 1 + i % 6, k = 3 + 2 * (i % 2);
        double f[LATENCY_FIT_TERMS];
        latency_block_features(f, h, h, ci, ci, e, k);
        double ms = 1e-7 * f[LATENCY_FIT_PW] + 2e-7 * f[LATENCY_FIT_DW] - 1e-9 * f[LATENCY_FIT_BYTES];
        fprintf(out, "p,conv,%d,%d,%d,%d,%d,%d,1,0,hard_swish,-1,na,%.17g,k%d\n", h, h, ci, ci, e,
                k, ms > 1e-3 ? ms : 1e-3, i);
    }
    fclose(out);
    struct latency_fit fit;
    CU_ASSERT_EQUAL_FATAL(latency_fit_csv(&fit, path), 0);
    for (int t = 0; t < LATENCY_FIT_TERMS; t++)
        CU_ASSERT(fit.coef[t] >= 0);
    CU_ASSERT(fit.coef[LATENCY_FIT_PW] > 0 && fit.coef[LATENCY_FIT_DW] > 0);
    EXPECT_NEAR(fit.coef[LATENCY_FIT_BYTES], 0.0, 0.0); /* dropped, not merely small */
}

/* Writes text as a CSV and expects latency_fit_csv to fail with "<path>:<line>" and part. */
static void expect_csv_error(const char *name, const char *text, const char *where,
                             const char *part)
{
    char path[256], want[300];
    snprintf(path, sizeof path, "%s", temp_path(name));
    FILE *out = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    fputs(text, out);
    fclose(out);
    struct latency_fit fit;
    CU_ASSERT_EQUAL(latency_fit_csv(&fit, path), -1);
    snprintf(want, sizeof want, "%s%s", path, where);
    EXPECT_CONTAINS(offnas_last_error(), want);
    EXPECT_CONTAINS(offnas_last_error(), part);
}

TEST(fit_reports_malformed_line_with_file_and_line)
{
    const char *good = "p,conv,16,16,16,16,1,3,1,0,hard_swish,-1,na,0.5,a\n";
    char text[2048];
    snprintf(text, sizeof text, "%s%s%sp,conv,16,16,16,16,1,3,1,0,hard_swish,-1,na,0.5\n%s",
             CSV_HEADER, good, good, good);
    expect_csv_error("short.csv", text, ":4:", "14 fields, the header has 15");
    snprintf(text, sizeof text, "%s%sp,conv,16,16,1x6,16,1,3,1,0,hard_swish,-1,na,0.5,b\n",
             CSV_HEADER, good);
    expect_csv_error("number.csv", text, ":3:", "in_channels '1x6' is not an integer");
    snprintf(text, sizeof text, "%s%s%s%sp,conv,16,16,16,16,1,3,1,0,hard_swish,-1,na,nan,c\n",
             CSV_HEADER, good, good, good);
    expect_csv_error("nan.csv", text, ":5:", "latency_ms 'nan' is not a positive number");
    snprintf(text, sizeof text, "%s%s\n%s", CSV_HEADER, good, good);
    expect_csv_error("blank.csv", text, ":3:", "empty line");
    snprintf(text, sizeof text, "%s%sp,conv,16,16,16,16,1,3,1,0,hard_swish,,na,0.5,d\n",
             CSV_HEADER, good);
    expect_csv_error("empty_field.csv", text, ":3:", "field 12 is empty");
    expect_csv_error("header.csv", "device,op_type,input_h\n", ":1:", "no column 'in_channels'");
}

TEST(fit_table_evaluates_the_model_for_every_op)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_fit fit = {.coef = {1e-6, 2e-6, 3e-7, 0.01}, .stem_coef = {4e-6, 0.02},
                              .device = "phone", .source = "fit: x.csv", .mape = 5, .rmse_ms = 0.1};
    struct latency_table t;
    latency_table_init(&t, net, "dev");
    latency_fit_table(&t, &fit, net, 2.0);
    EXPECT_NEAR(t.median[0][0], 2.0 * (4e-6 * 12 * 12 * 9 * 1 * 4 + 0.02), 1e-12);
    /* a stride-2 stem costs the MACs of its 6x6 output */
    struct net *strided = tiny_net("net.stem_stride=2", 1);
    struct latency_table t2;
    latency_table_init(&t2, strided, "dev");
    latency_fit_table(&t2, &fit, strided, 2.0);
    EXPECT_NEAR(t2.median[0][0], 2.0 * (4e-6 * 6 * 6 * 9 * 1 * 4 + 0.02), 1e-12);
    net_free(strided);
    const struct net_layer *layer = &net->layers[1];
    double f[LATENCY_FIT_TERMS], want = 0;
    latency_block_features(f, layer->hin, layer->hout, layer->cin, layer->cout, 3, 5);
    for (int k = 0; k < LATENCY_FIT_TERMS; k++)
        want += fit.coef[k] * f[k];
    EXPECT_EQ_INT(layer->cand[1].spec.kernel, 5);
    EXPECT_NEAR(t.median[2][1], 2.0 * want, 1e-12);
    EXPECT_NEAR(t.median[3][3], 0.0, 0.0); /* skip */
    CU_ASSERT(t.median[4][0] > 0);
    for (int s = 0; s < t.slot_count; s++)
        for (int i = 0; i < t.op_count[s]; i++) {
            CU_ASSERT(t.p10[s][i] == t.median[s][i] && t.p90[s][i] == t.median[s][i]);
            EXPECT_EQ_INT(t.repeats[s][i], 0);
        }
    CU_ASSERT_STRING_EQUAL(t.cpu, "phone");
    CU_ASSERT_STRING_EQUAL(t.source, "fit: x.csv");
    CU_ASSERT(t.fit_mape == 5 && t.fit_rmse_ms == 0.1);
    net_free(net);
}

TEST(block_features_count_macs_like_the_net)
{
    struct net *net = tiny_net(NULL, 1);
    for (int l = 0; l < net->layer_count; l++) {
        const struct net_layer *layer = &net->layers[l];
        for (int i = 0; i < layer->candidate_count; i++) {
            const struct net_block *blk = &layer->cand[i];
            if (blk->spec.kind == OP_SKIP)
                continue;
            double f[LATENCY_FIT_TERMS];
            latency_block_features(f, layer->hin, layer->hout, layer->cin, layer->cout,
                                   blk->spec.expand, blk->kernel);
            EXPECT_NEAR(f[LATENCY_FIT_PW] + f[LATENCY_FIT_DW], net_block_macs(net, l, i), 0.5);
        }
    }
    net_free(net);
}

/* ---- measurement -------------------------------------------------------------------------- */

TEST(measure_gives_ordered_positive_statistics)
{
    op_set_threads(1);
    offnas_log_quiet = 1;
    struct net *net = tiny_net("data.resize=16", 1);
    struct latency_table t;
    latency_table_init(&t, net, "here");
    latency_measure(&t, net, 2, 9);
    int skip = net_find_candidate(net, 2, &(struct op_spec){.kind = OP_SKIP});
    CU_ASSERT_FATAL(skip >= 0);
    for (int s = 0; s < t.slot_count; s++)
        for (int i = 0; i < t.op_count[s]; i++) {
            int is_skip = s == 3 && i == skip;
            CU_ASSERT(isfinite(t.median[s][i]) && (is_skip || t.median[s][i] > 0));
            CU_ASSERT(t.p10[s][i] <= t.median[s][i] && t.median[s][i] <= t.p90[s][i]);
            EXPECT_EQ_INT(t.repeats[s][i], 9);
        }
    /* skip is a no-op: far cheaper than the biggest block of its layer */
    double block = 0;
    for (int i = 0; i < t.op_count[3]; i++)
        block = t.median[3][i] > block ? t.median[3][i] : block;
    if (!(t.median[3][skip] * 10 < block))
        fprintf(stderr, "skip %.6f ms, largest block %.6f ms\n", t.median[3][skip], block);
    CU_ASSERT(t.median[3][skip] * 10 < block);
    net_free(net);
}

/* ---- network ------------------------------------------------------------------------------ */

TEST(link_presets_and_custom_values)
{
    struct { const char *preset; double mbps, rtt; } want[] = {
        {"3g", 1.1, 100}, {"lte", 5.85, 50}, {"wifi", 18.88, 10}, {"5g", 50, 20}};
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(want); i++) {
        struct job job;
        job_defaults(&job);
        char set[64];
        snprintf(set, sizeof set, "network.preset=%s", want[i].preset);
        CU_ASSERT_EQUAL_FATAL(job_set(&job, set), 0);
        struct latency_link link;
        CU_ASSERT_EQUAL_FATAL(latency_link_from_job(&link, &job), 0);
        CU_ASSERT_STRING_EQUAL(link.name, want[i].preset);
        EXPECT_NEAR(link.bandwidth_mbps, want[i].mbps, 0);
        EXPECT_NEAR(link.rtt_ms, want[i].rtt, 0);
    }
    struct job job;
    job_defaults(&job);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "network.preset=custom") ||
                              job_set(&job, "network.bandwidth_mbps=2.5") ||
                              job_set(&job, "network.rtt_ms=33"),
                          0);
    struct latency_link link;
    CU_ASSERT_EQUAL_FATAL(latency_link_from_job(&link, &job), 0);
    CU_ASSERT_STRING_EQUAL(link.name, "custom");
    EXPECT_NEAR(link.bandwidth_mbps, 2.5, 0);
    EXPECT_NEAR(link.rtt_ms, 33, 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "network.rtt_ms=0"), 0);
    CU_ASSERT_EQUAL(latency_link_from_job(&link, &job), -1);
    EXPECT_CONTAINS(offnas_last_error(), "network.rtt_ms");
}

TEST(transfer_time_formula)
{
    struct latency_link lte = {"lte", 5.85, 50};
    /* 784 input bytes: 50 ms + 6272 bits / 5850 bits per ms */
    EXPECT_NEAR(latency_transfer_ms(&lte, 784), 50 + 6272.0 / 5850.0, 1e-12);
    EXPECT_NEAR(latency_transfer_ms(&lte, 0), 50, 0);
    struct latency_link fast = {"custom", 1000, 1};
    EXPECT_NEAR(latency_transfer_ms(&fast, 125000), 1 + 1, 1e-12); /* 1 Mbit at 1 Gbit/s */
}

TEST(wire_bytes_per_value)
{
    EXPECT_EQ_INT(latency_wire_bytes("fp32"), 4);
    EXPECT_EQ_INT(latency_wire_bytes("fp16"), 2);
    EXPECT_EQ_INT(latency_wire_bytes("int8"), 1);
    EXPECT_EQ_INT(latency_wire_bytes("bf16"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "bf16");
}

static const struct test_case TESTS[] = {
    CASE(fingerprint_changes_only_with_the_space),
    CASE(fingerprint_names_the_stem_stride_only_when_not_1),
    CASE(table_init_has_the_space_shape),
    CASE(save_load_round_trip_is_bit_exact),
    CASE(load_refuses_wrong_fingerprint),
    CASE(load_refuses_missing_entry),
    CASE(load_refuses_nan_value),
    CASE(load_refuses_negative_value),
    CASE(load_refuses_infinite_value),
    CASE(load_refuses_missing_file),
    CASE(load_refuses_wrong_data_set_lengths),
    CASE(shipped_profiles_load_for_the_default_space),
    CASE(fit_recovers_known_coefficients),
    CASE(fit_drops_a_negative_coefficient),
    CASE(fit_reports_malformed_line_with_file_and_line),
    CASE(fit_table_evaluates_the_model_for_every_op),
    CASE(block_features_count_macs_like_the_net),
    CASE(measure_gives_ordered_positive_statistics),
    CASE(link_presets_and_custom_values),
    CASE(transfer_time_formula),
    CASE(wire_bytes_per_value),
};
TEST_MAIN("latency", TESTS)
