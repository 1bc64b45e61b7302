/* Tests of job files: parsing, defaults, errors naming FILE:LINE, --set, finalize, round trip. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include "job.h"
#include "fixture.h"
#include "testing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE(name) OFFNAS_SOURCE_DIR "/tests/fixtures/job/" name

/* Loads a fixture over the defaults and finalizes it; returns 0 on success. */
static int load_fixture(struct job *job, const char *path)
{
    job_defaults(job);
    if (job_load(job, path))
        return -1;
    return job_finalize(job);
}

/* Writes text to name.ini in the temporary folder; returns its path. */
static const char *write_temp(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s.ini", temp_root(), name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Expects loading the fixture (load + finalize) to fail with a message containing part. */
static void expect_fixture_error(const char *path, const char *part)
{
    struct job job;
    offnas_error("%s", "");
    EXPECT_EQ_INT(load_fixture(&job, path), -1);
    EXPECT_CONTAINS(offnas_last_error(), part);
    EXPECT_CONTAINS(offnas_last_error(), path);
}

/* An error message may quote the previous one (context on the way up) without garbling it. */
TEST(job_error_can_quote_the_previous_error)
{
    offnas_error("inner: %s", "cannot open: No such file or directory");
    offnas_error("outer: no readable checkpoint (%s)", offnas_last_error());
    CU_ASSERT_STRING_EQUAL(offnas_last_error(),
                           "outer: no readable checkpoint (inner: cannot open: No such file or "
                           "directory)");
}

TEST(job_defaults_match_design)
{
    struct job job;
    job_defaults(&job);
    CU_ASSERT_STRING_EQUAL(job.data_path, "data/fashion-mnist.h5");
    EXPECT_EQ_INT(job.data_val_size, 5000);
    EXPECT_EQ_INT(job.data_resize, 28);
    EXPECT_EQ_INT(job.net.stem_channels, 16);
    EXPECT_EQ_INT(job.net.stem_stride, 1);
    EXPECT_EQ_INT(job.net.head_channels, 128);
    EXPECT_EQ_INT(job.train_epochs, 12);
    EXPECT_EQ_INT(job.train_batch, 64);
    EXPECT_NEAR(job.train_lr, 0.05, 0);
    EXPECT_NEAR(job.train_momentum, 0.9, 0);
    EXPECT_NEAR(job.train_weight_decay, 4e-5, 0);
    EXPECT_NEAR(job.train_log_seconds, 5, 0);
    EXPECT_EQ_INT(job.search_epochs, 10);
    EXPECT_EQ_INT(job.search_warmup_epochs, 2);
    CU_ASSERT_STRING_EQUAL(job.search_loss, "additive");
    CU_ASSERT_STRING_EQUAL(job.search_wire, "int8");
    EXPECT_NEAR(job.search_arch_lr, 3e-3, 0);
    CU_ASSERT_STRING_EQUAL(job.latency_device, "");
    CU_ASSERT_STRING_EQUAL(job.network_preset, "3g");
    EXPECT_NEAR(job.network_bandwidth_mbps, 1.1, 0);
    EXPECT_NEAR(job.network_rtt_ms, 100, 0);
    EXPECT_EQ_INT(job.cluster_checksum_every, 50);
    EXPECT_EQ_INT(job.cluster_checkpoint_every, 200);
    EXPECT_EQ_INT(job.cluster_bucket_kb, 512);
    CU_ASSERT_STRING_EQUAL(job.source, "");

    /* the derived lists: the default fixed network of DESIGN.md */
    static const int channels[] = { 16, 24, 24, 32, 32, 48, 48, 64 };
    static const int strides[] = { 1, 2, 1, 1, 2, 1, 1, 1 };
    static const char *const ops[] = { "k3e1", "k3e3", "k3e3", "k5e3",
                                       "k3e3", "k5e3", "k3e3", "k3e3" };
    EXPECT_EQ_INT(job.net.layer_count, 8);
    for (int l = 0; l < 8; l++) {
        char name[16];
        EXPECT_EQ_INT(job.net.layer_channels[l], channels[l]);
        EXPECT_EQ_INT(job.net.layer_stride[l], strides[l]);
        CU_ASSERT_STRING_EQUAL(op_spec_name(&job.net.fixed_ops[l], name), ops[l]);
    }
    EXPECT_EQ_INT(job.net.candidate_count, 10);
    EXPECT_EQ_INT(job.net.candidates[9].kind, OP_SKIP);
}

TEST(job_good_file_parses)
{
    struct job job;
    CU_ASSERT_FATAL(load_fixture(&job, FIXTURE("good.ini")) == 0);
    CU_ASSERT_STRING_EQUAL(job.data_path, "data/other.h5");
    EXPECT_EQ_INT(job.data_val_size, 1000);
    EXPECT_EQ_INT(job.data_resize, 112);
    EXPECT_EQ_INT(job.net.stem_channels, 8);
    EXPECT_EQ_INT(job.train_epochs, 3);
    EXPECT_EQ_INT(job.train_batch, 64); /* untouched keys keep their defaults */
    EXPECT_NEAR(job.train_lr, 0.1, 0);
    EXPECT_NEAR(job.train_weight_decay, 1e-4, 0);
    EXPECT_EQ_INT(job.train_flip, 1);
    EXPECT_EQ_INT(job.train_deterministic, 1);
    CU_ASSERT_STRING_EQUAL(job.search_loss, "multiplicative");
    CU_ASSERT_STRING_EQUAL(job.search_wire, "fp16");
    EXPECT_NEAR(job.search_tau_end, 0.25, 0);
    CU_ASSERT_STRING_EQUAL(job.latency_device, "profiles/pixel4.h5");
    EXPECT_NEAR(job.latency_device_scale, 2.5, 0);
    CU_ASSERT_STRING_EQUAL(job.network_preset, "custom");
    EXPECT_NEAR(job.network_bandwidth_mbps, 20, 0);
    EXPECT_NEAR(job.network_rtt_ms, 35.5, 0);
    CU_ASSERT_STRING_EQUAL(job.cluster_profilers, "mobile:1, edge:1");
    EXPECT_EQ_INT(job.cluster_bucket_kb, 1024);
    CU_ASSERT_STRING_EQUAL(job.source, FIXTURE("good.ini"));

    EXPECT_EQ_INT(job.net.layer_count, 3);
    EXPECT_EQ_INT(job.net.layer_channels[1], 16);
    EXPECT_EQ_INT(job.net.layer_stride[1], 2);
    EXPECT_EQ_INT(job.net.fixed_ops[1].kind, OP_BLOCK);
    EXPECT_EQ_INT(job.net.fixed_ops[1].kernel, 5);
    EXPECT_EQ_INT(job.net.fixed_ops[1].expand, 6);
    EXPECT_EQ_INT(job.net.fixed_ops[2].kind, OP_SKIP);
    EXPECT_EQ_INT(job.net.candidate_count, 3);
    EXPECT_EQ_INT(job.net.candidates[1].kernel, 7);
}

TEST(job_empty_sections_keep_defaults)
{
    struct job job, defaults;
    job_defaults(&defaults);
    CU_ASSERT_FATAL(load_fixture(&job, FIXTURE("empty_sections.ini")) == 0);
    EXPECT_EQ_INT(job.train_epochs, defaults.train_epochs);
    CU_ASSERT_STRING_EQUAL(job.net_layers, defaults.net_layers);
}

TEST(job_defaults_round_trip)
{
    struct job job, back;
    job_defaults(&job);
    char *text = job_to_string(&job);
    const char *path = write_temp("defaults_round_trip", text);
    job_defaults(&back);
    /* start from different values so that every key must come from the file */
    CU_ASSERT_FATAL(job_set(&back, "train.lr=0.123") == 0);
    CU_ASSERT_FATAL(job_set(&back, "net.ops=k7e6, k7e6, k7e6, k7e6, k7e6, k7e6, k7e6, k7e6") == 0);
    CU_ASSERT_FATAL(job_load(&back, path) == 0);
    CU_ASSERT_FATAL(job_finalize(&back) == 0);
    char *again = job_to_string(&back);
    /* the texts differ only in the header line naming the source */
    CU_ASSERT_STRING_EQUAL(strchr(text, '\n'), strchr(again, '\n'));
    EXPECT_NEAR(back.train_lr, job.train_lr, 0);
    EXPECT_NEAR(back.train_weight_decay, job.train_weight_decay, 0);
    CU_ASSERT_STRING_EQUAL(back.net_ops, job.net_ops);
    EXPECT_CONTAINS(text, "[train]\nepochs = 12\n");
    EXPECT_CONTAINS(text, "lr = 0.05\n");
    EXPECT_CONTAINS(text, "device =\n");
    free(text);
    free(again);
    remove(path);
}

TEST(job_odd_values_round_trip_exactly)
{
    struct job job, back;
    job_defaults(&job);
    CU_ASSERT_FATAL(job_set(&job, "train.lr=0.1") == 0);
    CU_ASSERT_FATAL(job_set(&job, "search.lambda=0.30000000000000004") == 0);
    CU_ASSERT_FATAL(job_set(&job, "network.rtt_ms=1e-300") == 0);
    CU_ASSERT_FATAL(job_set(&job, "search.arch_lr=0.0033333333333333335") == 0);
    CU_ASSERT_FATAL(job_set(&job, "latency.edge=profiles/edge server.h5") == 0);
    CU_ASSERT_FATAL(job_set(&job, "data.seed=2147483647") == 0);
    char *text = job_to_string(&job);
    const char *path = write_temp("odd_round_trip", text);
    job_defaults(&back);
    CU_ASSERT_FATAL(job_load(&back, path) == 0);
    CU_ASSERT(back.train_lr == job.train_lr);
    CU_ASSERT(back.search_lambda == job.search_lambda);
    CU_ASSERT(back.network_rtt_ms == job.network_rtt_ms);
    CU_ASSERT(back.search_arch_lr == job.search_arch_lr);
    CU_ASSERT_STRING_EQUAL(back.latency_edge, "profiles/edge server.h5");
    EXPECT_EQ_INT(back.data_seed, 2147483647);
    free(text);
    remove(path);
}

/* A bad job file fails to load with one message naming the file, the line and the cause (one
 * fixture in tests/fixtures/job per kind of mistake). */
TEST(job_bad_files_name_file_line_and_cause)
{
    static const struct {
        const char *fixture;
        int line;
        const char *cause;
    } cases[] = {
        {"unknown_section.ini", 3, "unknown section [trian]"},
        {"unknown_key.ini", 7, "unknown key 'epoch' in [train]"},
        {"not_integer.ini", 5, "train.epochs: 'ten' is not an integer"},
        {"not_number.ini", 2, "train.lr: 'fast' is not a number"},
        {"below_minimum.ini", 3, "train.lr: -1 is below the minimum 0"},
        {"above_maximum.ini", 2, "net.stem: 2000 is above the maximum 1024"},
        {"bad_enum.ini", 3, "search.loss: 'foo' is not one of additive, log, multiplicative"},
        {"bad_bool.ini", 2, "train.flip: 'maybe' is not a boolean"},
        {"malformed.ini", 3, "line without '='"},
        {"bad_section_header.ini", 1, "section header without ']'"},
        {"key_before_section.ini", 1, "key 'epochs' before any [section]"},
        {"too_many_ops.ini", 3, "net.ops: 3 ops for 2 layers"},
        {"too_few_ops.ini", 4, "net.ops: 2 ops for 3 layers"},
        {"bad_layers.ini", 2, "net.layers: layer 2: '24-2' is not channels/stride"},
        {"bad_stride.ini", 2, "net.layers: layer 2: stride 3, expected 1 or 2"},
        {"bad_skip.ini", 4, "net.ops: layer 2: skip needs stride 1 and equal channels"},
        {"bad_op.ini", 2, "net.ops: layer 2: op 'k4e3': kernel must be 3, 5 or 7"},
        {"duplicate_candidate.ini", 2, "net.candidates: 'k3e3' appears twice"},
    };
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(cases); i++) {
        char path[512], message[512];
        snprintf(path, sizeof path, "%s/tests/fixtures/job/%s", OFFNAS_SOURCE_DIR,
                 cases[i].fixture);
        snprintf(message, sizeof message, "%s:%d: %s", cases[i].fixture, cases[i].line,
                 cases[i].cause);
        expect_fixture_error(path, message);
    }
}

TEST(job_booleans_accept_words)
{
    static const char *const yes[] = { "1", "true", "yes", "on", "TRUE", "On" };
    static const char *const no[] = { "0", "false", "no", "off", "False", "OFF" };
    struct job job;
    job_defaults(&job);
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(yes); i++) {
        char set[64];
        snprintf(set, sizeof set, "train.flip=%s", yes[i]);
        CU_ASSERT(job_set(&job, set) == 0);
        EXPECT_EQ_INT(job.train_flip, 1);
        snprintf(set, sizeof set, "train.flip=%s", no[i]);
        CU_ASSERT(job_set(&job, set) == 0);
        EXPECT_EQ_INT(job.train_flip, 0);
    }
}

TEST(job_missing_file)
{
    struct job job;
    job_defaults(&job);
    EXPECT_EQ_INT(job_load(&job, "no/such/job.ini"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "no/such/job.ini: cannot open: No such file or directory");
}

TEST(job_folder_is_not_a_file)
{
    struct job job;
    job_defaults(&job);
    EXPECT_EQ_INT(job_load(&job, OFFNAS_SOURCE_DIR "/tests"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "/tests: cannot read: Is a directory");
}

TEST(job_failed_load_leaves_job_unchanged)
{
    struct job job, before;
    job_defaults(&job);
    before = job;
    /* not_integer.ini sets batch and lr before its bad line */
    EXPECT_EQ_INT(job_load(&job, FIXTURE("not_integer.ini")), -1);
    CU_ASSERT(memcmp(&job, &before, sizeof job) == 0);
}

/* The stem takes stride 1 or 2, like the layers. */
TEST(job_stem_stride_is_1_or_2)
{
    struct job job;
    job_defaults(&job);
    EXPECT_EQ_INT(job_set(&job, "net.stem_stride=2"), 0);
    EXPECT_EQ_INT(job.net.stem_stride, 2);
    EXPECT_EQ_INT(job_set(&job, "net.stem_stride=3"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "net.stem_stride: 3 is above the maximum 2");
    EXPECT_EQ_INT(job_set(&job, "net.stem_stride=0"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "net.stem_stride: 0 is below the minimum 1");
    EXPECT_EQ_INT(job.net.stem_stride, 2);
}

TEST(job_layer_limits)
{
    struct job job;
    job_defaults(&job);
    CU_ASSERT(job_set(&job, "net.layers=2000/1, 24/2") == 0);
    CU_ASSERT(job_set(&job, "net.ops=k3e1, k3e3") == 0);
    EXPECT_EQ_INT(job_finalize(&job), -1);
    EXPECT_CONTAINS(offnas_last_error(), "net.layers: layer 1: 2000 channels, expected 1..1024");

    char layers[JOB_TEXT_MAX] = "", ops[JOB_TEXT_MAX] = "";
    for (int l = 0; l < NET_MAX_LAYERS + 1; l++) {
        strcat(layers, l ? ", 8/1" : "8/1");
        strcat(ops, l ? ", k3e1" : "k3e1");
    }
    char set[JOB_TEXT_MAX + 32];
    snprintf(set, sizeof set, "net.layers=%s", layers);
    CU_ASSERT(job_set(&job, set) == 0);
    snprintf(set, sizeof set, "net.ops=%s", ops);
    CU_ASSERT(job_set(&job, set) == 0);
    EXPECT_EQ_INT(job_finalize(&job), -1);
    EXPECT_CONTAINS(offnas_last_error(), "net.layers: more than 32 layers");

    CU_ASSERT(job_set(&job, "net.layers=") == 0);
    EXPECT_EQ_INT(job_finalize(&job), -1);
    EXPECT_CONTAINS(offnas_last_error(), "net.layers: no layers");
}

TEST(job_finalize_error_after_set_names_no_line)
{
    /* the bad value came from --set, not from the file: no file line is blamed */
    struct job job;
    job_defaults(&job);
    CU_ASSERT_FATAL(job_load(&job, FIXTURE("good.ini")) == 0);
    CU_ASSERT_FATAL(job_set(&job, "net.ops=k3e1, k3e3") == 0);
    EXPECT_EQ_INT(job_finalize(&job), -1);
    CU_ASSERT(strstr(offnas_last_error(), "good.ini:") == NULL);
    EXPECT_CONTAINS(offnas_last_error(), "net.ops: 2 ops for 3 layers");
}

/* baseline.pin_split and pin_kept name a split the layers have and a count its feature map
 * has (the defaults: 8 layers, layer 2 of 24 channels); the ends send none. */
TEST(job_pinned_prune_split_is_checked_against_the_layers)
{
    static const struct {
        const char *split, *kept, *message;
    } cases[] = {
        {"baseline.pin_split=10", "baseline.pin_kept=0",
         "baseline.pin_split: 10 is beyond the last split 9"},
        {"baseline.pin_split=-1", "baseline.pin_kept=3",
         "baseline.pin_kept: 3 without baseline.pin_split"},
        {"baseline.pin_split=9", "baseline.pin_kept=3",
         "baseline.pin_kept: 3, but split 9 sends no feature map"},
        {"baseline.pin_split=2", "baseline.pin_kept=0", "baseline.pin_kept: 0 is not in 1..24"},
        {"baseline.pin_split=2", "baseline.pin_kept=25", "baseline.pin_kept: 25 is not in 1..24"},
    };
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(cases); i++) {
        struct job job;
        job_defaults(&job);
        CU_ASSERT_FATAL(job_set(&job, cases[i].split) == 0 && job_set(&job, cases[i].kept) == 0);
        EXPECT_EQ_INT(job_finalize(&job), -1);
        EXPECT_CONTAINS(offnas_last_error(), cases[i].message);
    }
    struct job job;
    job_defaults(&job);
    CU_ASSERT_FATAL(job_set(&job, "baseline.pin_split=2") == 0);
    CU_ASSERT_FATAL(job_set(&job, "baseline.pin_kept=24") == 0);
    EXPECT_EQ_INT(job_finalize(&job), 0);
    CU_ASSERT_FATAL(job_set(&job, "baseline.pin_split=0") == 0);
    CU_ASSERT_FATAL(job_set(&job, "baseline.pin_kept=0") == 0);
    EXPECT_EQ_INT(job_finalize(&job), 0);
}

/* Writes a job file of n bytes, head followed by 'x' up to the closing newline, and expects
 * loading it to fail with a message containing part. */
static void expect_long_file_error(const char *name, const char *head, size_t n,
                                   const char *part)
{
    char *text = malloc(n);
    CU_ASSERT_FATAL(text != NULL);
    memset(text, 'x', n);
    memcpy(text, head, strlen(head));
    strcpy(text + n - 2, "\n");
    const char *path = write_temp(name, text);
    struct job job;
    job_defaults(&job);
    EXPECT_EQ_INT(job_load(&job, path), -1);
    EXPECT_CONTAINS(offnas_last_error(), part);
    free(text);
    remove(path);
}

TEST(job_string_too_long)
{
    expect_long_file_error("string_too_long", "[data]\npath = ", JOB_PATH_MAX + 64,
                           ":2: data.path: value is 560 characters long, the maximum is 511");
}

TEST(job_line_too_long)
{
    expect_long_file_error("line_too_long", "[net]\nlayers = ", JOB_TEXT_MAX + 1000,
                           ":2: line longer than");
}

TEST(job_long_layer_list_loads)
{
    /* 32 wide layers make a line longer than inih's default 200 characters */
    char text[JOB_TEXT_MAX + 64] = "[net]\nlayers = ";
    char ops[JOB_TEXT_MAX] = "ops = ";
    for (int l = 0; l < NET_MAX_LAYERS; l++) {
        strcat(text, l ? ", 1024/1" : "1024/1");
        strcat(ops, l ? ", k7e6" : "k7e6");
    }
    strcat(text, "\n");
    strcat(text, ops);
    strcat(text, "\n");
    const char *path = write_temp("long_layer_list", text);
    struct job job;
    job_defaults(&job);
    CU_ASSERT_FATAL(job_load(&job, path) == 0);
    CU_ASSERT_FATAL(job_finalize(&job) == 0);
    EXPECT_EQ_INT(job.net.layer_count, NET_MAX_LAYERS);
    EXPECT_EQ_INT(job.net.layer_channels[NET_MAX_LAYERS - 1], 1024);
    remove(path);
}

TEST(job_set_overrides)
{
    struct job job;
    job_defaults(&job);
    CU_ASSERT_FATAL(job_load(&job, FIXTURE("good.ini")) == 0);
    CU_ASSERT(job_set(&job, "train.epochs=1") == 0);
    CU_ASSERT(job_set(&job, " search.wire = fp32 ") == 0);
    CU_ASSERT(job_set(&job, "latency.device=") == 0);
    CU_ASSERT(job_finalize(&job) == 0);
    EXPECT_EQ_INT(job.train_epochs, 1);
    CU_ASSERT_STRING_EQUAL(job.search_wire, "fp32");
    CU_ASSERT_STRING_EQUAL(job.latency_device, "");
    EXPECT_NEAR(job.train_lr, 0.1, 0); /* the file's value stays */
}

TEST(job_bad_set_names_key)
{
    static const struct {
        const char *set, *message;
    } cases[] = {
        {"train.epochs=x", "--set train.epochs=x: train.epochs: 'x' is not an integer"},
        {"train.epoch=1", "--set train.epoch=1: unknown key 'epoch' in [train]"},
        {"trian.epochs=1", "--set trian.epochs=1: unknown section [trian]"},
        {"epochs=1", "--set epochs=1: expected section.key=value"},
        {"search.loss=foo", "search.loss: 'foo' is not one of additive, log, multiplicative"},
        {"train.lr=nan", "train.lr: 'nan' is not a number"},
        {"train.epochs=99999999999999999999",
         "train.epochs: 99999999999999999999 is above the maximum"},
        {"data.path=a ;b", "data.path: value contains ' ;'"},
        /* would be written "path = ;b", a comment (found by tests/fuzz/fuzz_job_set) */
        {"data.path=;b", "data.path: value starts with ';'"},
    };
    struct job job;
    job_defaults(&job);
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(cases); i++) {
        EXPECT_EQ_INT(job_set(&job, cases[i].set), -1);
        EXPECT_CONTAINS(offnas_last_error(), cases[i].message);
    }
    EXPECT_EQ_INT(job.train_epochs, 12);
}

TEST(job_op_spec_parse_and_name)
{
    struct op_spec spec;
    char name[16];
    CU_ASSERT_FATAL(op_spec_parse(&spec, "k7e6") == 0);
    EXPECT_EQ_INT(spec.kind, OP_BLOCK);
    EXPECT_EQ_INT(spec.kernel, 7);
    EXPECT_EQ_INT(spec.expand, 6);
    CU_ASSERT_STRING_EQUAL(op_spec_name(&spec, name), "k7e6");
    CU_ASSERT_FATAL(op_spec_parse(&spec, "skip") == 0);
    EXPECT_EQ_INT(spec.kind, OP_SKIP);
    CU_ASSERT_STRING_EQUAL(op_spec_name(&spec, name), "skip");
    CU_ASSERT_FATAL(op_spec_parse(&spec, "k3e8") == 0);

    EXPECT_EQ_INT(op_spec_parse(&spec, "k3e9"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "op 'k3e9': expansion must be 1..8");
    EXPECT_EQ_INT(op_spec_parse(&spec, "k2e3"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "kernel must be 3, 5 or 7");
    static const char *const bad[] = { "", "k", "k3", "k3e", "e3k3", "k3e3x", "K3E3", "sk", "k3e-1" };
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(bad); i++) {
        EXPECT_EQ_INT(op_spec_parse(&spec, bad[i]), -1);
        EXPECT_CONTAINS(offnas_last_error(), "is not an op");
    }
}

TEST(job_shipped_fixed_ini_is_valid)
{
    struct job job, defaults;
    job_defaults(&defaults);
    CU_ASSERT_FATAL(load_fixture(&job, OFFNAS_SOURCE_DIR "/jobs/fixed.ini") == 0);
    EXPECT_EQ_INT(job.net.layer_count, defaults.net.layer_count);
    for (int l = 0; l < job.net.layer_count; l++) {
        EXPECT_EQ_INT(job.net.layer_channels[l], defaults.net.layer_channels[l]);
        EXPECT_EQ_INT(job.net.layer_stride[l], defaults.net.layer_stride[l]);
        CU_ASSERT(memcmp(&job.net.fixed_ops[l], &defaults.net.fixed_ops[l], sizeof(struct op_spec)) == 0);
    }
}

/* A job text stored in a run (a checkpoint's, an arch.json's) is parsed by way of a
 * temporary file: its errors name the file the run keeps, never the temporary one. */
TEST(job_text_errors_name_the_kept_file_not_a_temporary)
{
    const char *dir = temp_dir("job_text");
    struct job job;
    EXPECT_EQ_INT(job_load_text(&job, "[train]\nbatchx = 3\n", dir, "job.ini"), -1);
    char want[1024];
    snprintf(want, sizeof want, "%s/job.ini:2: unknown key 'batchx'", dir);
    EXPECT_CONTAINS(offnas_last_error(), want);
    CU_ASSERT(strstr(offnas_last_error(), ".tmp") == NULL);
    /* a good text loads and names the kept file as its source */
    EXPECT_EQ_INT(job_load_text(&job, "[train]\nbatch = 3\n", dir, "job.ini"), 0);
    EXPECT_EQ_INT(job.train_batch, 3);
    snprintf(want, sizeof want, "%s/job.ini", dir);
    CU_ASSERT_STRING_EQUAL(job.source, want);
    /* job_load_as: the file read and the name shown differ */
    EXPECT_EQ_INT(job_load_as(&job, want, "run/checkpoint.h5: job"), 0);
    CU_ASSERT_STRING_EQUAL(job.source, "run/checkpoint.h5: job");
}

/* search.t_ref_ms stops at an hour, the largest T_ref a checkpoint reads back. */
TEST(job_t_ref_stops_where_a_checkpoint_would_refuse_it)
{
    struct job job;
    job_defaults(&job);
    EXPECT_EQ_INT(job_set(&job, "search.t_ref_ms=3600000"), 0);
    EXPECT_EQ_INT(job_set(&job, "search.t_ref_ms=3600001"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "search.t_ref_ms: 3600001 is above the maximum 3.6e+06");
}

static const struct test_case TESTS[] = {
    CASE(job_defaults_match_design),
    CASE(job_good_file_parses),
    CASE(job_empty_sections_keep_defaults),
    CASE(job_defaults_round_trip),
    CASE(job_odd_values_round_trip_exactly),
    CASE(job_bad_files_name_file_line_and_cause),
    CASE(job_booleans_accept_words),
    CASE(job_missing_file),
    CASE(job_folder_is_not_a_file),
    CASE(job_failed_load_leaves_job_unchanged),
    CASE(job_stem_stride_is_1_or_2),
    CASE(job_layer_limits),
    CASE(job_finalize_error_after_set_names_no_line),
    CASE(job_pinned_prune_split_is_checked_against_the_layers),
    CASE(job_string_too_long),
    CASE(job_line_too_long),
    CASE(job_long_layer_list_loads),
    CASE(job_set_overrides),
    CASE(job_bad_set_names_key),
    CASE(job_op_spec_parse_and_name),
    CASE(job_shipped_fixed_ini_is_valid),
    CASE(job_error_can_quote_the_previous_error),
    CASE(job_text_errors_name_the_kept_file_not_a_temporary),
    CASE(job_t_ref_stops_where_a_checkpoint_would_refuse_it),
};

TEST_MAIN("job", TESTS)
