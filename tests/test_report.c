/* Tests of the report module: Pareto marking and the best-run rule on hand-made rows with known
 * answers (ties included), the neurosurgeon run's two extra rows, a row written to
 * pareto.csv and report.json and read back, optional fields and their defaults, and bad
 * summaries refused with the file and the field named and the output folder left untouched;
 * runs retrained under other seeds (RUN/seeds/<seed>): their mean and spread, the Pareto marks
 * and best run taken from the mean, and seeds of another network or damaged ones refused.
 * Each test writes its run folders in a folder of its own inside the test process's temporary
 * folder (tests/lib/fixture.h), removed at exit. */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "testing.h"

#include "cmd.h"
#include "common.h"
#include "report.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>

/* root/name/summary.json holding text (NULL: the folder alone); returns the run folder
 * (static buffer, so root, a buffer of path_in, stays valid) */
static const char *write_run(const char *root, const char *name, const char *text)
{
    static char dir[192];
    char path[224];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0777), 0);
    if (!text)
        return dir;
    snprintf(path, sizeof path, "%s/summary.json", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
    return dir;
}

/* A row with every field known: accuracy and total latency as given, the rest fixed. */
static struct report_row make_row(double accuracy, double total_ms)
{
    struct report_row row = {.method = REPORT_SEARCH, .lambda = 0.5, .test_accuracy = accuracy,
                             .split_point = 3, .kept_channels = 12, .total_channels = 24,
                             .bytes_sent = 3072, .macs = 1234567, .params = 45678};
    row.latency_ms = (struct arch_latency){.total = total_ms, .device = total_ms / 4,
                                           .transfer = total_ms / 2, .edge = total_ms / 4};
    snprintf(row.dir, sizeof row.dir, "runs/r%g", total_ms);
    snprintf(row.ops, sizeof row.ops, "k3e1, skip, k5e3");
    return row;
}

TEST(report_pareto_keeps_undominated_rows_and_ties)
{
    /* (accuracy, ms): A and B tie (neither dominates the other); D is beaten by A on both; E
     * has C's accuracy at a higher latency; F, C, A/B, G form the front */
    const double points[][2] = {{0.90, 10}, {0.90, 10}, {0.92, 20}, {0.89, 15},
                                {0.92, 25}, {0.95, 100}, {0.80, 5}, {0.95, 100.5}};
    const int expected[] = {1, 1, 1, 0, 0, 1, 1, 0};
    struct report_row rows[8];
    for (int i = 0; i < 8; i++)
        rows[i] = make_row(points[i][0], points[i][1]);
    report_mark_pareto(rows, 8);
    for (int i = 0; i < 8; i++) {
        if (rows[i].pareto != expected[i])
            fprintf(stderr, "row %d (%.2f, %g ms): pareto %d, expected %d\n", i, points[i][0],
                    points[i][1], rows[i].pareto, expected[i]);
        CU_ASSERT_EQUAL(rows[i].pareto, expected[i]);
    }
}

TEST(report_best_is_fastest_within_half_a_point_of_the_most_accurate)
{
    /* top 0.95; 0.945 is exactly 0.5 pt below (within), 0.9449 just outside */
    struct report_row rows[5] = {make_row(0.95, 100), make_row(0.946, 50), make_row(0.945, 40),
                                 make_row(0.9449, 30), make_row(0.80, 5)};
    EXPECT_EQ_INT(report_best(rows, 5), 2);
    /* equal latency: the more accurate one */
    rows[1] = make_row(0.947, 40);
    EXPECT_EQ_INT(report_best(rows, 5), 1);
    /* alone, the most accurate is the best; no rows, no best */
    EXPECT_EQ_INT(report_best(rows, 1), 0);
    EXPECT_EQ_INT(report_best(rows, 0), -1);
}

TEST(report_neurosurgeon_run_adds_all_device_and_all_edge_rows)
{
    const char *root = temp_dir("neurosurgeon");
    const char *dir = write_run(
        root, "ns",
        "{\"method\": \"neurosurgeon\", \"test_accuracy\": 0.848, \"ops\": \"k3e1, skip, "
        "k3e3\", \"split_point\": 1, \"kept_channels\": 16, \"total_channels\": 16, "
        "\"bytes_sent\": 12544, \"input_bytes\": 784, \"macs\": 3000000, \"params\": 60000,"
        " \"latency_ms\": {\"device\": 1, \"transfer\": 50, \"edge\": 1, \"total\": 52, "
        "\"all_device\": 400, \"all_edge\": 9, \"all_edge_parts\": {\"device\": 0, "
        "\"transfer\": 8, \"edge\": 1}}}");
    struct report_row rows[REPORT_ROWS_PER_RUN];
    EXPECT_EQ_INT(report_read_run(dir, rows), 3);
    EXPECT_EQ_INT(rows[0].method, REPORT_NEUROSURGEON);
    EXPECT_EQ_INT(rows[0].split_point, 1);
    EXPECT_NEAR(rows[0].latency_ms.total, 52, 0);

    const struct report_row *dev = &rows[1], *edge = &rows[2];
    EXPECT_EQ_INT(dev->method, REPORT_ALL_DEVICE);
    EXPECT_EQ_INT(dev->split_point, 4); /* L + 1, three ops */
    EXPECT_EQ_INT(dev->kept_channels, 0);
    EXPECT_EQ_INT(dev->total_channels, 0);
    EXPECT_NEAR(dev->latency_ms.total, 400, 0);
    EXPECT_NEAR(dev->latency_ms.device, 400, 0);
    EXPECT_NEAR(dev->latency_ms.transfer, 0, 0);
    EXPECT_NEAR(dev->bytes_sent, 0, 0);
    EXPECT_EQ_INT(edge->method, REPORT_ALL_EDGE);
    EXPECT_EQ_INT(edge->split_point, 0);
    EXPECT_EQ_INT(edge->kept_channels + edge->total_channels, 0);
    EXPECT_NEAR(edge->latency_ms.total, 9, 0);
    EXPECT_NEAR(edge->latency_ms.transfer, 8, 0);
    EXPECT_NEAR(edge->latency_ms.edge, 1, 0);
    EXPECT_NEAR(edge->bytes_sent, 784, 0);
    for (int i = 1; i < 3; i++) {
        EXPECT_NEAR(rows[i].test_accuracy, 0.848, 0);
        CU_ASSERT_STRING_EQUAL(rows[i].ops, "k3e1, skip, k3e3");
        CU_ASSERT_STRING_EQUAL(rows[i].dir, dir);
        EXPECT_NEAR(rows[i].macs, 3000000, 0);
    }

    /* without the all-edge parts and the input size: the total only */
    dir = write_run(root, "ns_bare", "{\"method\": \"neurosurgeon\", \"test_accuracy\": 0.8, "
                                     "\"latency_ms\": {\"total\": 52, \"all_device\": 400, "
                                     "\"all_edge\": 9}}");
    EXPECT_EQ_INT(report_read_run(dir, rows), 3);
    EXPECT_NEAR(rows[2].latency_ms.total, 9, 0);
    CU_ASSERT(isnan(rows[2].latency_ms.device) && isnan(rows[2].latency_ms.transfer) &&
              isnan(rows[2].latency_ms.edge));
    CU_ASSERT(isnan(rows[2].bytes_sent));
    EXPECT_EQ_INT(rows[1].split_point, REPORT_UNKNOWN); /* no ops: L unknown */
}

TEST(report_reads_optional_fields_and_their_defaults)
{
    const char *root = temp_dir("optional_fields");
    /* what offnas train + eval write: no method, no lambda, "parameters" for params */
    const char *dir = write_run(
        root, "eval",
        "{\"test_accuracy\": 0.8123, \"val_accuracy\": 0.8, \"parameters\": 45678, "
        "\"macs\": 1234567, \"split_point\": 3, \"kept_channels\": 12, \"total_channels\":"
        " 24, \"bytes_sent\": 3072.0, \"wire\": \"int8\", \"latency_ms\": {\"device\": "
        "4.1, \"transfer\": 10.2, \"edge\": 0.5, \"total\": 14.8, \"all_device\": 30.5, "
        "\"all_edge\": 22.1}, \"network\": {\"name\": \"3G\"}, \"ops\": \"k3e1, skip\"}");
    struct report_row rows[REPORT_ROWS_PER_RUN];
    EXPECT_EQ_INT(report_read_run(dir, rows), 1); /* a search run: no extra rows */
    EXPECT_EQ_INT(rows[0].method, REPORT_SEARCH);
    CU_ASSERT(isnan(rows[0].lambda));
    EXPECT_NEAR(rows[0].params, 45678, 0);
    EXPECT_NEAR(rows[0].macs, 1234567, 0);
    EXPECT_NEAR(rows[0].latency_ms.transfer, 10.2, 0);
    EXPECT_EQ_INT(rows[0].kept_channels, 12);

    /* a baseline's own fields; "params" wins over "parameters"; nulls are unknown */
    dir = write_run(root, "prune", "{\"method\": \"prune-split\", \"lambda\": 2, \"params\": 10, "
                                   "\"parameters\": 20, \"macs\": null, \"test_accuracy\": 1, "
                                   "\"latency_ms\": {\"total\": 0}}");
    EXPECT_EQ_INT(report_read_run(dir, rows), 1);
    EXPECT_EQ_INT(rows[0].method, REPORT_PRUNE_SPLIT);
    EXPECT_NEAR(rows[0].lambda, 2, 0);
    EXPECT_NEAR(rows[0].params, 10, 0);
    CU_ASSERT(isnan(rows[0].macs) && isnan(rows[0].latency_ms.device));
    EXPECT_EQ_INT(rows[0].split_point, REPORT_UNKNOWN);
    CU_ASSERT_STRING_EQUAL(rows[0].ops, "");
}

/* Splits one CSV line into fields (quoted fields with "" for a quote); returns the count. */
static int split_csv(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    while (n < max) {
        char *out = p;
        fields[n++] = p;
        if (*p == '"') {
            for (p++; *p && !(p[0] == '"' && p[1] != '"'); p++) {
                if (*p == '"')
                    p++;
                *out++ = *p;
            }
            p += *p == '"';
        } else {
            while (*p && *p != ',' && *p != '\n')
                *out++ = *p++;
        }
        int more = *p == ',';
        *out = 0;
        if (!more)
            break;
        p++;
    }
    return n;
}

TEST(report_row_round_trips_through_csv_and_json)
{
    struct report rep = {.rows = calloc(2, sizeof(struct report_row)), .count = 2, .best = 0};
    rep.rows[0] = make_row(0.8765, 14.8125);
    rep.rows[0].method = REPORT_NAS_THEN_SPLIT;
    snprintf(rep.rows[0].dir, sizeof rep.rows[0].dir, "runs/a,\"b\"");
    rep.rows[1] = make_row(0.5, 3);
    rep.rows[1].lambda = rep.rows[1].bytes_sent = rep.rows[1].macs = NAN;
    rep.rows[1].latency_ms.device = NAN;
    rep.rows[1].split_point = REPORT_UNKNOWN;
    report_mark_pareto(rep.rows, rep.count);
    char out[128], path[160];
    snprintf(out, sizeof out, "%s/R", temp_dir("round_trip"));
    CU_ASSERT_EQUAL_FATAL(report_write(&rep, out, 0), 0);

    snprintf(path, sizeof path, "%s/pareto.csv", out);
    FILE *f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char line[1024], *v[16];
    CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof line, f));
    CU_ASSERT_STRING_EQUAL(line, "method,lambda,dir,test_accuracy,split_point,kept_channels,"
                                 "total_channels,bytes_sent,device_ms,transfer_ms,edge_ms,"
                                 "total_ms,macs,params,pareto\n");
    CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof line, f));
    EXPECT_EQ_INT(split_csv(line, v, 16), 15);
    CU_ASSERT_STRING_EQUAL(v[0], "nas-then-split");
    EXPECT_NEAR(atof(v[1]), 0.5, 0);
    CU_ASSERT_STRING_EQUAL(v[2], "runs/a,\"b\"");
    EXPECT_NEAR(atof(v[3]), 0.8765, 1e-15);
    EXPECT_EQ_INT(atoi(v[4]), 3);
    EXPECT_EQ_INT(atoi(v[6]), 24);
    EXPECT_NEAR(atof(v[9]), 14.8125 / 2, 1e-12);
    EXPECT_NEAR(atof(v[11]), 14.8125, 1e-12);
    EXPECT_NEAR(atof(v[12]), 1234567, 0);
    EXPECT_EQ_INT(atoi(v[14]), 1);
    CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof line, f));
    EXPECT_EQ_INT(split_csv(line, v, 16), 15);
    CU_ASSERT(!v[1][0] && !v[4][0] && !v[7][0] && !v[8][0] && !v[12][0]); /* unknown: empty */
    EXPECT_EQ_INT(atoi(v[14]), 1);
    CU_ASSERT_PTR_NULL(fgets(line, sizeof line, f));
    fclose(f);

    snprintf(path, sizeof path, "%s/report.json", out);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    json_t *runs = json_object_get(root, "runs"), *a = json_array_get(runs, 0);
    json_t *b = json_array_get(runs, 1);
    EXPECT_EQ_INT(json_array_size(runs), 2);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(a, "method")), "nas-then-split");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(a, "dir")), "runs/a,\"b\"");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(a, "ops")), "k3e1, skip, k5e3");
    EXPECT_NEAR(json_number_value(json_object_get(a, "test_accuracy")), 0.8765, 1e-15);
    EXPECT_NEAR(json_number_value(json_object_get(a, "lambda")), 0.5, 0);
    EXPECT_EQ_INT(json_integer_value(json_object_get(a, "kept_channels")), 12);
    EXPECT_EQ_INT(json_integer_value(json_object_get(a, "macs")), 1234567);
    json_t *ms = json_object_get(a, "latency_ms");
    EXPECT_NEAR(json_number_value(json_object_get(ms, "total")), 14.8125, 1e-12);
    EXPECT_NEAR(json_number_value(json_object_get(ms, "edge")), 14.8125 / 4, 1e-12);
    CU_ASSERT(json_is_true(json_object_get(a, "pareto")));
    CU_ASSERT(json_is_null(json_object_get(b, "lambda")) &&
              json_is_null(json_object_get(b, "split_point")) &&
              json_is_null(json_object_get(b, "macs")) &&
              json_is_null(json_object_get(json_object_get(b, "latency_ms"), "device")));
    CU_ASSERT(json_equal(json_object_get(root, "best"), a));
    json_decref(root);
    free(rep.rows);
}

/* test_report's own one-line check: report_read on [good, bad] fails naming file and field */
static void expect_refused(const char *good, const char *bad, const char *message)
{
    struct report rep;
    const char *dirs[] = {good, bad};
    CU_ASSERT_EQUAL(report_read(&rep, dirs, 2), -1);
    CU_ASSERT_PTR_NULL(rep.rows);
    EXPECT_CONTAINS(offnas_last_error(), bad);
    EXPECT_CONTAINS(offnas_last_error(), message);
    CU_ASSERT_PTR_NULL(strchr(offnas_last_error(), '\n'));
}

TEST(report_refuses_a_bad_summary_naming_file_and_field_and_leaves_out_untouched)
{
    const char *root = temp_dir("refused");
    char good[128], out[128], path[192];
    snprintf(good, sizeof good, "%s",
             write_run(root, "good", "{\"test_accuracy\": 0.9, \"latency_ms\": {\"total\": 3}}"));
    static const struct {
        const char *name, *text, *message;
    } cases[] = {
        {"no_accuracy", "{\"latency_ms\": {\"total\": 3}}",
         "/summary.json: test_accuracy: missing"},
        {"no_total", "{\"test_accuracy\": 0.9, \"latency_ms\": {\"device\": 3}}",
         "/summary.json: latency_ms.total: missing"},
        {"string", "{\"test_accuracy\": \"0.9\", \"latency_ms\": {\"total\": 3}}",
         "test_accuracy: expected a number, got a string"},
        {"infinite", "{\"test_accuracy\": 0.9,\n \"latency_ms\": {\"total\": 1e999}}",
         "/summary.json: latency_ms.total: not a finite number"},
        {"not_object", "{\"test_accuracy\": 0.9, \"latency_ms\": [3]}",
         "latency_ms: expected an object, got an array"},
        {"percent", "{\"test_accuracy\": 90, \"latency_ms\": {\"total\": 3}}",
         "test_accuracy: 90 is not a fraction in [0, 1]"},
        {"method",
         "{\"method\": \"magic\", \"test_accuracy\": 0.9, \"latency_ms\": {\"total\": 3}}",
         "method: 'magic' is not one of"},
        {"split",
         "{\"split_point\": 1.5, \"test_accuracy\": 0.9, \"latency_ms\": {\"total\": 3}}",
         "split_point: 1.5 is not a whole number"},
        {"ns", "{\"method\": \"neurosurgeon\", \"test_accuracy\": 0.9, \"latency_ms\": {\"total\": "
               "3, \"all_device\": 9}}",
         "latency_ms.all_edge: missing"},
    };
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(cases); i++)
        expect_refused(good, write_run(root, cases[i].name, cases[i].text), cases[i].message);
    snprintf(path, sizeof path, "%s/no_such_run", root);
    expect_refused(good, path, "no_such_run/summary.json: cannot read");

    /* the command: exit 1, the old report kept, nothing else written */
    snprintf(out, sizeof out, "%s/R", root);
    CU_ASSERT_EQUAL_FATAL(mkdir(out, 0777), 0);
    snprintf(path, sizeof path, "%s/report.md", out);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("old report\n", f);
    fclose(f);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/string", root);
    char *argv[] = {"report", "--out", out, good, bad, NULL};
    EXPECT_EQ_INT(cmd_report(5, argv), 1);
    EXPECT_CONTAINS(offnas_last_error(), "string/summary.json: test_accuracy:");
    char text[64] = "";
    f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_PTR_NOT_NULL(fgets(text, sizeof text, f));
    fclose(f);
    CU_ASSERT_STRING_EQUAL(text, "old report\n");
    int entries = 0; /* report.md alone: no other output, no temporary file left */
    DIR *listing = opendir(out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(listing);
    for (struct dirent *e; (e = readdir(listing));)
        entries += e->d_name[0] != '.';
    closedir(listing);
    EXPECT_EQ_INT(entries, 1);
}

/* Two runs at one point of the plot (neurosurgeon and all-device when the best split is the
 * device) get one label "neurosurgeon = all-device" on the first, an empty one on the other;
 * a run elsewhere keeps its own. */
TEST(report_plot_labels_runs_at_one_point_once)
{
    struct report_row rows[3] = {make_row(0.89, 0.688), make_row(0.89, 0.688),
                                 make_row(0.88, 0.244)};
    rows[0].method = REPORT_NEUROSURGEON;
    rows[0].lambda = NAN;
    rows[1].method = REPORT_ALL_DEVICE;
    rows[1].lambda = NAN;
    struct report r = {.rows = rows, .count = 3, .best = 0};
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    report_write_gp(&r, "out", out);
    fclose(out);
    EXPECT_CONTAINS(text, "0.688 0.89 \"neurosurgeon = all-device\" ");
    EXPECT_CONTAINS(text, "0.688 0.89 \"\" ");
    EXPECT_CONTAINS(text, "0.244 0.88 \"search λ=0.5\" ");
    free(text);
}

/* ---- runs retrained under other seeds (RUN/seeds/<seed>) ----------------------------- */

/* run/seeds/<seed>/summary.json holding text (NULL: the folder alone); returns the folder
 * (write_run's static buffer, so run must not be it) */
static const char *write_seed(const char *run, int seed, const char *text)
{
    char seeds[176], name[16];
    snprintf(seeds, sizeof seeds, "%s/seeds", run);
    CU_ASSERT_FATAL(mkdir(seeds, 0777) == 0 || errno == EEXIST);
    snprintf(name, sizeof name, "%d", seed);
    return write_run(seeds, name, text);
}

/* A summary of the network "k3e1, skip" at split 2 (3 of 16 channels), 10 ms, with accuracy. */
static const char *summary_text(double accuracy)
{
    static char text[256];
    snprintf(text, sizeof text,
             "{\"test_accuracy\": %.17g, \"ops\": \"k3e1, skip\", \"split_point\": 2, "
             "\"kept_channels\": 3, \"total_channels\": 16, \"latency_ms\": {\"total\": 10}}",
             accuracy);
    return text;
}

TEST(report_run_with_two_seeds_gives_their_mean_and_spread)
{
    const char *root = temp_dir("seeds_mean");
    char run[160], out[192], path[224];
    snprintf(run, sizeof run, "%s", write_run(root, "run", summary_text(0.90)));
    write_seed(run, 10, summary_text(0.93)); /* seed order is numeric: 2 before 10 */
    write_seed(run, 2, summary_text(0.88));
    snprintf(path, sizeof path, "%s/seeds/2.log", run); /* a log beside them is no seed */
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);

    struct report rep;
    const char *dirs[] = {run};
    CU_ASSERT_EQUAL_FATAL(report_read(&rep, dirs, 1), 0);
    const struct report_row *row = &rep.rows[0];
    EXPECT_EQ_INT(row->seed_count, 3);
    EXPECT_NEAR(row->test_accuracy, (0.90 + 0.88 + 0.93) / 3, 1e-15);
    EXPECT_NEAR(row->seed_spread, 0.93 - 0.88, 1e-15);
    EXPECT_NEAR(row->seed_accuracy[0], 0.90, 0);
    EXPECT_NEAR(row->seed_accuracy[1], 0.88, 0);
    EXPECT_NEAR(row->seed_accuracy[2], 0.93, 0);

    snprintf(out, sizeof out, "%s/R", root);
    CU_ASSERT_EQUAL_FATAL(report_write(&rep, out, 0), 0);
    char *md = read_text(out, "report.md"), *csv = read_text(out, "pareto.csv");
    CU_ASSERT_PTR_NOT_NULL_FATAL(md);
    CU_ASSERT_PTR_NOT_NULL_FATAL(csv);
    EXPECT_CONTAINS(md, "| 0.9033 (3 seeds, spread 0.0500) |");
    EXPECT_CONTAINS(md, "test accuracy 0.9033 (mean of 3 seeds).");
    EXPECT_CONTAINS(csv, "pareto,test_accuracy_seeds,test_accuracy_spread\n");
    EXPECT_CONTAINS(csv, ",1,0.9 0.88 0.93,0.05");
    free(md);
    free(csv);
    snprintf(path, sizeof path, "%s/report.json", out);
    json_error_t err;
    json_t *root_json = json_load_file(path, 0, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root_json);
    json_t *j = json_array_get(json_object_get(root_json, "runs"), 0);
    json_t *seeds = json_object_get(j, "test_accuracy_seeds");
    EXPECT_EQ_INT(json_array_size(seeds), 3);
    EXPECT_NEAR(json_number_value(json_array_get(seeds, 1)), 0.88, 0);
    EXPECT_NEAR(json_number_value(json_object_get(j, "test_accuracy_spread")), 0.05, 1e-15);
    EXPECT_NEAR(json_number_value(json_object_get(j, "test_accuracy")), row->test_accuracy, 1e-14);
    json_decref(root_json);
    report_free(&rep);
}

/* Fast A (10 ms) trained once at 0.92 dominates slow B (20 ms, 0.91); A's two retrainings at
 * 0.89 bring its mean to 0.90, below B: B joins the front and, A being 1 pt below it, is the
 * best run. */
TEST(report_seed_mean_decides_the_pareto_marks_and_the_best_run)
{
    const char *root = temp_dir("seeds_pareto");
    char a[160], b[160];
    snprintf(a, sizeof a, "%s",
             write_run(root, "a", "{\"test_accuracy\": 0.92, \"latency_ms\": {\"total\": 10}}"));
    snprintf(b, sizeof b, "%s",
             write_run(root, "b", "{\"test_accuracy\": 0.91, \"latency_ms\": {\"total\": 20}}"));
    const char *dirs[] = {a, b};
    struct report rep;
    CU_ASSERT_EQUAL_FATAL(report_read(&rep, dirs, 2), 0);
    CU_ASSERT(rep.rows[0].pareto && !rep.rows[1].pareto);
    EXPECT_EQ_INT(rep.best, 0);
    report_free(&rep);

    for (int seed = 2; seed <= 3; seed++)
        write_seed(a, seed, "{\"test_accuracy\": 0.89, \"latency_ms\": {\"total\": 10}}");
    CU_ASSERT_EQUAL_FATAL(report_read(&rep, dirs, 2), 0);
    EXPECT_NEAR(rep.rows[0].test_accuracy, 0.90, 1e-15);
    CU_ASSERT(rep.rows[0].pareto && rep.rows[1].pareto);
    EXPECT_EQ_INT(rep.best, 1);
    report_free(&rep);
}

/* dir/arch.json: the fuzz corpus's arch.json at split 2 keeping channels c[0..3) of 16 */
static void write_arch_json(const char *dir, const int *c)
{
    json_error_t err;
    json_t *arch = json_load_file(OFFNAS_SOURCE_DIR "/tests/fuzz/corpus/arch_json/tiny-run.json",
                                  0, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(arch);
    json_object_set_new(arch, "split_point", json_integer(2));
    json_object_set_new(arch, "total_channels", json_integer(16));
    json_object_set_new(arch, "kept_channels", json_integer(3));
    json_t *channels = json_array();
    for (int i = 0; i < 3; i++)
        json_array_append_new(channels, json_integer(c[i]));
    json_object_set_new(arch, "channels", channels);
    char path[320];
    snprintf(path, sizeof path, "%s/arch.json", dir);
    CU_ASSERT_EQUAL_FATAL(json_dump_file(arch, path, 0), 0);
    json_decref(arch);
}

TEST(report_refuses_a_seed_of_another_network_naming_its_file)
{
    const char *root = temp_dir("seeds_other_network");
    static const struct {
        const char *name, *text, *message;
    } cases[] = {
        {"split", "{\"test_accuracy\": 0.9, \"ops\": \"k3e1, skip\", \"split_point\": 3, "
                  "\"kept_channels\": 3, \"total_channels\": 16, \"latency_ms\": {\"total\": 10}}",
         "seeds/2/summary.json: split_point: 3, but the run's is 2"},
        {"kept", "{\"test_accuracy\": 0.9, \"ops\": \"k3e1, skip\", \"split_point\": 2, "
                 "\"kept_channels\": 4, \"total_channels\": 16, \"latency_ms\": {\"total\": 10}}",
         "seeds/2/summary.json: kept_channels: 4, but the run's is 3"},
        {"ops", "{\"test_accuracy\": 0.9, \"ops\": \"k3e1, k3e1\", \"split_point\": 2, "
                "\"kept_channels\": 3, \"total_channels\": 16, \"latency_ms\": {\"total\": 10}}",
         "seeds/2/summary.json: ops: 'k3e1, k3e1', but the run's are 'k3e1, skip'"},
        {"method", "{\"method\": \"prune-split\", \"test_accuracy\": 0.9, \"ops\": \"k3e1, skip\", "
                   "\"split_point\": 2, \"kept_channels\": 3, \"total_channels\": 16, "
                   "\"latency_ms\": {\"total\": 10}}",
         "seeds/2/summary.json: method: prune-split, but the run's is search"},
    };
    char good[160];
    snprintf(good, sizeof good, "%s", write_run(root, "good", summary_text(0.9)));
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(cases); i++) {
        char run[160];
        snprintf(run, sizeof run, "%s", write_run(root, cases[i].name, summary_text(0.9)));
        write_seed(run, 2, cases[i].text);
        expect_refused(good, run, cases[i].message);
    }

    /* the same counts but other channels kept (arch.json): another network too */
    char run[160];
    snprintf(run, sizeof run, "%s", write_run(root, "channels", summary_text(0.9)));
    write_arch_json(run, (const int[]){0, 1, 2});
    write_arch_json(write_seed(run, 2, summary_text(0.91)), (const int[]){0, 1, 5});
    expect_refused(good, run, "seeds/2/arch.json: channels: not those of the run's");
    /* ...except for prune-split, whose retrainings rank the channels on their own network */
    const char *prune = "{\"method\": \"prune-split\", \"test_accuracy\": 0.9, \"ops\": \"k3e1, "
                        "skip\", \"split_point\": 2, \"kept_channels\": 3, \"total_channels\": 16,"
                        " \"latency_ms\": {\"total\": 10}}";
    snprintf(run, sizeof run, "%s", write_run(root, "prune", prune));
    write_arch_json(run, (const int[]){0, 1, 2});
    write_arch_json(write_seed(run, 2, prune), (const int[]){0, 1, 5});
    struct report_row rows[REPORT_ROWS_PER_RUN];
    EXPECT_EQ_INT(report_read_run(run, rows), 1);
    EXPECT_EQ_INT(rows[0].seed_count, 2);
}

TEST(report_refuses_a_missing_or_garbled_seed_summary)
{
    const char *root = temp_dir("seeds_damaged");
    char good[160], run[160];
    snprintf(good, sizeof good, "%s", write_run(root, "good", summary_text(0.9)));

    snprintf(run, sizeof run, "%s", write_run(root, "missing", summary_text(0.9)));
    write_seed(run, 2, summary_text(0.91));
    write_seed(run, 3, NULL);
    expect_refused(good, run, "seeds/3/summary.json: cannot read: No such file or directory");

    snprintf(run, sizeof run, "%s", write_run(root, "garbled", summary_text(0.9)));
    write_seed(run, 2, "{\"test_accuracy\": 0.9,");
    expect_refused(good, run, "seeds/2/summary.json: line 1 column");

    snprintf(run, sizeof run, "%s", write_run(root, "no_accuracy", summary_text(0.9)));
    write_seed(run, 2, "{\"ops\": \"k3e1, skip\", \"latency_ms\": {\"total\": 10}}");
    expect_refused(good, run, "seeds/2/summary.json: test_accuracy: missing");

    snprintf(run, sizeof run, "%s", write_run(root, "not_a_seed", summary_text(0.9)));
    write_seed(run, 2, summary_text(0.91));
    char path[224];
    snprintf(path, sizeof path, "%s/seeds/best", run);
    CU_ASSERT_EQUAL_FATAL(mkdir(path, 0777), 0);
    expect_refused(good, run, "seeds/best: not a seed folder");
}

static const struct test_case TESTS[] = {
    CASE(report_plot_labels_runs_at_one_point_once),
    CASE(report_pareto_keeps_undominated_rows_and_ties),
    CASE(report_best_is_fastest_within_half_a_point_of_the_most_accurate),
    CASE(report_neurosurgeon_run_adds_all_device_and_all_edge_rows),
    CASE(report_reads_optional_fields_and_their_defaults),
    CASE(report_row_round_trips_through_csv_and_json),
    CASE(report_refuses_a_bad_summary_naming_file_and_field_and_leaves_out_untouched),
    CASE(report_run_with_two_seeds_gives_their_mean_and_spread),
    CASE(report_seed_mean_decides_the_pareto_marks_and_the_best_run),
    CASE(report_refuses_a_seed_of_another_network_naming_its_file),
    CASE(report_refuses_a_missing_or_garbled_seed_summary),
};
TEST_MAIN("report", TESTS)
