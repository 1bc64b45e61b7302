/* Tests of the latency module: search-space fingerprints, the shape of a table, profile files
 * and the refusals of bad ones. */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "testing.h"
#include "tiny.h"

#include "check.h"
#include "common.h"
#include "h5.h"
#include "job.h"
#include "latency.h"
#include "net.h"
#include "rng.h"

#include <stdint.h>
#include <stdlib.h>


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
    struct net *rgb = net_create(&job.net, 1, 12, 3, 10, 0, 1);
    struct net *more = net_create(&job.net, 1, 12, 1, 100, 0, 1);
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
    struct net *def = net_create(&job.net, 1, job.data_resize, 1, 10, 0, 1);
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
    tiny_fill_table(&t, net, 5, 50);
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
    tiny_fill_table(&t, other, 5, 50);
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
    tiny_fill_table(&t, net, 5, 50);
    t.op_count[3] = 3; /* the file lacks (slot 3, op 3), the skip of the last layer */
    expect_refused(&t, "missing.h5", net, "no entry for (slot 3, op 3) (skip)");
    net_free(net);
}

/* Saves the good table t to name and writes value over element index (flat) of data set dset
 * of the file, as a hand edit would; returns the file's path (a static buffer of temp_path). */
static const char *damaged_copy(const struct latency_table *t, const char *name,
                                const char *dset, size_t index, double value)
{
    const char *path = temp_path(name);
    CU_ASSERT_EQUAL_FATAL(latency_save(t, path), 0);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    CU_ASSERT_FATAL(d >= 0);
    double all[LATENCY_MAX_SLOTS * NET_MAX_CANDIDATES];
    CU_ASSERT_FATAL(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, all) >= 0);
    all[index] = value;
    CU_ASSERT_FATAL(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, all) >= 0);
    H5Dclose(d);
    H5Fclose(f);
    return path;
}

/* Expects latency_load of path against net to fail with path and part in one line. */
static void expect_load_refused(const char *path, const struct net *net, const char *part)
{
    char copy[512];
    snprintf(copy, sizeof copy, "%s", path);
    struct latency_table back;
    CU_ASSERT_EQUAL(latency_load(&back, copy, net), -1);
    EXPECT_CONTAINS(offnas_last_error(), copy);
    EXPECT_CONTAINS(offnas_last_error(), part);
    CU_ASSERT(strchr(offnas_last_error(), '\n') == NULL);
}

/* Expects latency_save of t to refuse with part in the message and to leave no file. */
static void expect_save_refused(const struct latency_table *t, const char *name,
                                const char *part)
{
    char path[512];
    snprintf(path, sizeof path, "%s", temp_path(name));
    remove(path);
    CU_ASSERT_EQUAL(latency_save(t, path), -1);
    EXPECT_CONTAINS(offnas_last_error(), path);
    EXPECT_CONTAINS(offnas_last_error(), part);
    FILE *f = fopen(path, "r");
    CU_ASSERT_PTR_NULL(f);
    if (f)
        fclose(f);
}

/* (slot 2, op 1) of the tiny space is row 5: slots 0, 1 hold 1 + 3 entries before it. */
#define ROW_SLOT2_OP1 5

TEST(load_refuses_nan_value)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    tiny_fill_table(&t, net, 5, 50);
    expect_load_refused(damaged_copy(&t, "nan.h5", "median_ms", ROW_SLOT2_OP1, NAN), net,
                        "median_ms (slot 2, op 1): nan is not a number in [0, 3.6e+06]");
    net_free(net);
}

TEST(load_refuses_negative_value)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    tiny_fill_table(&t, net, 5, 50);
    expect_load_refused(damaged_copy(&t, "negative.h5", "p10_ms", 1, -0.5), net,
                        "p10_ms (slot 1, op 0): -0.5 is not a number");
    net_free(net);
}

TEST(load_refuses_infinite_value)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    tiny_fill_table(&t, net, 5, 50);
    expect_load_refused(damaged_copy(&t, "inf.h5", "p90_ms", 11, INFINITY), net,
                        "p90_ms (slot 4, op 0): inf is not a number");
    net_free(net);
}

/* 1e308 ms is finite, but a network's sum of such entries is inf and E[T] NaN: any entry above
 * an hour is refused. */
TEST(load_refuses_a_latency_above_an_hour)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    tiny_fill_table(&t, net, 5, 50);
    expect_load_refused(damaged_copy(&t, "huge.h5", "median_ms", 0, 1e308), net,
                        "median_ms (slot 0, op 0): 1e+308 is not a number in [0, 3.6e+06]");
    expect_load_refused(damaged_copy(&t, "hour.h5", "median_ms", 0, CHECK_MAX_LATENCY_MS * 1.01),
                        net, "median_ms (slot 0, op 0)");
    /* an hour itself is still a measurement */
    struct latency_table back;
    const char *path = damaged_copy(&t, "an_hour.h5", "median_ms", 0, CHECK_MAX_LATENCY_MS);
    CU_ASSERT_EQUAL(latency_load(&back, path, net), 0);
    net_free(net);
}

/* A 64-bit attribute is range-checked before it becomes an int: 2^32 + 3 threads is not 3. */
TEST(load_refuses_integer_attributes_out_of_range)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    tiny_fill_table(&t, net, 5, 50);
    const struct {
        const char *name;
        int64_t value;
        const char *part;
    } cases[] = {
        {"threads", 4294967299LL, "threads: 4294967299 is not in 1..4096"},
        {"threads", 0, "threads: 0 is not in 1..4096"},
        {"version", -4294967296LL, "version: -4294967296 is not in 0..2147483647"},
        {"slot_count", 6, "slot_count: 6 is not in 5..5"},
    };
    for (size_t c = 0; c < OFFNAS_ARRAY_LEN(cases); c++) {
        const char *path = temp_path("attr.h5");
        CU_ASSERT_EQUAL_FATAL(latency_save(&t, path), 0);
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        CU_ASSERT_FATAL(f >= 0);
        CU_ASSERT_EQUAL_FATAL(h5_attr_set_int(f, cases[c].name, cases[c].value), 0);
        H5Fclose(f);
        expect_load_refused(path, net, cases[c].part);
    }
    net_free(net);
}

TEST(load_refuses_fit_errors_that_are_not_figures)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    tiny_fill_table(&t, net, 5, 50);
    t.fit_mape = 5;
    t.fit_rmse_ms = 0.1;
    const struct {
        const char *name;
        double value;
        const char *part;
    } cases[] = {
        {"fit_mape", INFINITY, "fit_mape: inf is not a number"},
        {"fit_mape", -1, "fit_mape: -1 is not a number"},
        {"fit_rmse_ms", 1e308, "fit_rmse_ms: 1e+308 is not a number in [0, 3.6e+06]"},
    };
    for (size_t c = 0; c < OFFNAS_ARRAY_LEN(cases); c++) {
        const char *path = temp_path("fit.h5");
        CU_ASSERT_EQUAL_FATAL(latency_save(&t, path), 0);
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        CU_ASSERT_FATAL(f >= 0);
        CU_ASSERT_EQUAL_FATAL(h5_attr_set_double(f, cases[c].name, cases[c].value), 0);
        H5Fclose(f);
        expect_load_refused(path, net, cases[c].part);
    }
    net_free(net);
}

/* A string attribute longer than its field is refused, not cut to fit. */
TEST(load_refuses_a_string_attribute_longer_than_its_field)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    tiny_fill_table(&t, net, 5, 50);
    const char *path = temp_path("long.h5");
    CU_ASSERT_EQUAL_FATAL(latency_save(&t, path), 0);
    char name[100];
    memset(name, 'd', sizeof name - 1);
    name[sizeof name - 1] = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    CU_ASSERT_EQUAL_FATAL(h5_attr_set_string(f, "device", name), 0);
    H5Fclose(f);
    expect_load_refused(path, net, "device: longer than 63 characters");
    net_free(net);
}

/* What latency_load refuses, latency_save does not write. */
TEST(save_refuses_what_load_refuses)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table good, t;
    tiny_fill_table(&good, net, 5, 50);
    t = good;
    t.median[2][1] = NAN;
    expect_save_refused(&t, "nan.h5", "median_ms (slot 2, op 1): nan is not a number");
    t = good;
    t.p90[4][0] = 1e307;
    expect_save_refused(&t, "huge.h5", "p90_ms (slot 4, op 0): 1e+307 is not a number");
    t = good;
    t.fit_mape = INFINITY;
    t.fit_rmse_ms = 1;
    expect_save_refused(&t, "mape.h5", "fit_mape: inf is not a number");
    t = good;
    t.threads = 0;
    expect_save_refused(&t, "threads.h5", "threads: 0 is not in 1..4096");
    t = good;
    t.repeats[1][2] = -3;
    expect_save_refused(&t, "repeats.h5", "repeats (slot 1, op 2): -3 is negative");
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
    tiny_fill_table(&t, net, 5, 50);
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
    struct net *net = net_create(&job.net, 1, job.data_resize, 1, 10, 0, 1);
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
            total += t.median[l + 1][net_find_candidate(net, l, &job.net.fixed_ops[l])];
        CU_ASSERT(total > 0.1 && total < 10);
    }
    net_free(net);
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
    CASE(load_refuses_a_latency_above_an_hour),
    CASE(load_refuses_integer_attributes_out_of_range),
    CASE(load_refuses_fit_errors_that_are_not_figures),
    CASE(load_refuses_a_string_attribute_longer_than_its_field),
    CASE(save_refuses_what_load_refuses),
    CASE(load_refuses_missing_file),
    CASE(load_refuses_wrong_data_set_lengths),
    CASE(shipped_profiles_load_for_the_default_space),
};
TEST_MAIN("latency", TESTS)
