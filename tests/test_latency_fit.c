/* Tests of latency_fit: the cost model fitted to a CSV of per-block measurements, its
 * refusals of malformed files, and the table it evaluates for a search space. */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "testing.h"
#include "tiny.h"

#include "common.h"
#include "latency.h"
#include "latency_fit.h"
#include "net.h"
#include "op.h"

#include <stdio.h>

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
    expect_csv_error("number.csv", text, ":3:", "in_channels: '1x6' is not an integer");
    snprintf(text, sizeof text, "%s%s%s%sp,conv,16,16,16,16,1,3,1,0,hard_swish,-1,na,nan,c\n",
             CSV_HEADER, good, good, good);
    expect_csv_error("nan.csv", text, ":5:", "latency_ms: 'nan' is not a number of ms");
    snprintf(text, sizeof text, "%s%s\n%s", CSV_HEADER, good, good);
    expect_csv_error("blank.csv", text, ":3:", "empty line");
    snprintf(text, sizeof text, "%s%sp,conv,16,16,16,16,1,3,1,0,hard_swish,,na,0.5,d\n",
             CSV_HEADER, good);
    expect_csv_error("empty_field.csv", text, ":3:", "field 12 is empty");
    expect_csv_error("header.csv", "device,op_type,input_h\n", ":1:", "in_channels: header has no such column");
}

/* Finite but absurd times (the fit then gave entries near 1e307 and an infinite error) and
 * long fields are refused on their line; a bad value is echoed cut to 40 characters. */
TEST(fit_refuses_absurd_values_on_their_line)
{
    const char *good = "p,conv,16,16,16,16,1,3,1,0,hard_swish,-1,na,0.5,a\n";
    char text[4096];
    snprintf(text, sizeof text, "%s%sp,conv,16,16,16,16,1,3,1,0,hard_swish,-1,na,1e300,b\n",
             CSV_HEADER, good);
    expect_csv_error("huge.csv", text, ":3:", "latency_ms: '1e300' is not a number of ms in (0, 3.6e+06]");
    snprintf(text, sizeof text, "%s%sp,conv,16,16,16,16,1,3,1,0,hard_swish,-1,na,-2,b\n",
             CSV_HEADER, good);
    expect_csv_error("negative.csv", text, ":3:", "latency_ms: '-2' is not a number");
    snprintf(text, sizeof text, "%s%sp,conv,16,16,99999999999999999999,16,1,3,1,0,hard_swish,-1,"
             "na,0.5,b\n", CSV_HEADER, good);
    expect_csv_error("overflow.csv", text, ":3:", "in_channels: '99999999999999999999' is not an integer");
    char device[200];
    memset(device, 'x', sizeof device - 1);
    device[sizeof device - 1] = 0;
    snprintf(text, sizeof text, "%s%s,conv,16,16,16,16,1,3,1,0,hard_swish,-1,na,0.5,b\n",
             CSV_HEADER, device);
    expect_csv_error("device.csv", text, ":2:", "device: longer than 63 characters");
    snprintf(text, sizeof text, "%s%sp,conv,16,16,16,16,1,3,1,0,hard_swish,-1,na,%s,b\n",
             CSV_HEADER, good, device);
    expect_csv_error("echo.csv", text, ":3:", "latency_ms: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' is");
    expect_csv_error("empty.csv", "", "", "empty file");
}

TEST(fit_table_evaluates_the_model_for_every_op)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_fit fit = {.coef = {1e-6, 2e-6, 3e-7, 0.01}, .stem_coef = {4e-6, 0.02},
                              .device = "phone", .source = "fit: x.csv", .mape = 5, .rmse_ms = 0.1};
    struct latency_table t;
    latency_table_init(&t, net, "dev");
    EXPECT_EQ_INT(latency_fit_table(&t, &fit, net, 2.0), 0);
    EXPECT_NEAR(t.median[0][0], 2.0 * (4e-6 * 12 * 12 * 9 * 1 * 4 + 0.02), 1e-12);
    /* a stride-2 stem costs the MACs of its 6x6 output */
    struct net *strided = tiny_net("net.stem_stride=2", 1);
    struct latency_table t2;
    latency_table_init(&t2, strided, "dev");
    EXPECT_EQ_INT(latency_fit_table(&t2, &fit, strided, 2.0), 0);
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

/* A model (or --scale) giving an entry latency_load would refuse fails naming the CSV, so the
 * fit never writes a profile offnas cannot read. */
TEST(fit_table_refuses_entries_the_loader_would_refuse)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_fit fit = {.coef = {1e-6, 2e-6, 3e-7, 0.01}, .stem_coef = {4e-6, 0.02},
                              .device = "phone", .source = "fit: x.csv", .mape = 5, .rmse_ms = 0.1};
    struct latency_table t;
    latency_table_init(&t, net, "dev");
    EXPECT_EQ_INT(latency_fit_table(&t, &fit, net, 1e300), -1);
    EXPECT_CONTAINS(offnas_last_error(), "x.csv: the fitted model gives");
    EXPECT_CONTAINS(offnas_last_error(), "not in [0, 3.6e+06]");
    fit.coef[LATENCY_FIT_PW] = 1e300;
    EXPECT_EQ_INT(latency_fit_table(&t, &fit, net, 1.0), -1);
    EXPECT_CONTAINS(offnas_last_error(), "(slot 1, op 0)");
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

static const struct test_case TESTS[] = {
    CASE(fit_recovers_known_coefficients),
    CASE(fit_drops_a_negative_coefficient),
    CASE(fit_reports_malformed_line_with_file_and_line),
    CASE(fit_refuses_absurd_values_on_their_line),
    CASE(fit_table_evaluates_the_model_for_every_op),
    CASE(fit_table_refuses_entries_the_loader_would_refuse),
    CASE(block_features_count_macs_like_the_net),
};
TEST_MAIN("latency_fit", TESTS)
