/* Tests of fixed-network training on real Fashion-MNIST: a short run learns (loss well below
 * chance, accuracy well above it) and writes its three files with one log row per step;
 * single-threaded runs with the same seeds are bit-identical; a saved model loads back and
 * evaluates to the recorded accuracy.
 *
 * The data set is imported once per process (about 3 s) from /usr/share/datasets/fashion-mnist
 * (Debian package dataset-fashion-mnist, installed by tests/deps) into a temporary directory
 * removed at exit. Each ctest is its own process, so each pays for one import.
 *
 * Runtimes on 2 cores shared with a training run: train_short_run_learns ~30 s,
 * train_is_deterministic ~11 s, train_load_model_restores_accuracy ~11 s. */
#define _XOPEN_SOURCE 700
#include "testing.h"

#include "common.h"
#include "data.h"
#include "h5.h"
#include "job.h"
#include "net.h"
#include "op.h"
#include "train.h"

#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIXTURE_NAME "train"
#include "fixture.h"

/* ---- helpers -------------------------------------------------------------------------- */

/* A job on a slice of Fashion-MNIST: defaults, data.path, then the given assignments. */
static void make_job(struct job *job, const char *const *sets, int count)
{
    char set[600];
    job_defaults(job);
    snprintf(set, sizeof set, "data.path=%s", fashion_path());
    CU_ASSERT_EQUAL_FATAL(job_set(job, set), 0);
    for (int i = 0; i < count; i++) {
        int rc = job_set(job, sets[i]);
        if (rc)
            fprintf(stderr, "job_set(%s): %s\n", sets[i], offnas_last_error());
        CU_ASSERT_EQUAL_FATAL(rc, 0);
    }
    CU_ASSERT_EQUAL_FATAL(job_finalize(job), 0);
}

/* Reads dir/name into a malloc'd string (NULL if missing). */
static char *read_text(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    size_t got = fread(text, 1, (size_t)n, f);
    fclose(f);
    text[got] = 0;
    return text;
}

/* Reads a float data set of a model file (rank 1); count in *n. NULL on error. */
static float *read_floats(const char *dir, const char *file, const char *name, hsize_t *n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    hid_t f = h5_open_read(path);
    if (f < 0)
        return NULL;
    float *v = h5_read(f, name, H5_F32, 1, n);
    h5_close(f);
    return v;
}

/* ---- tests ----------------------------------------------------------------------------- */

/* Measured on this machine (seeds 1..3): final batch loss 0.64-0.93, mean loss of the last 50
 * steps 0.63-0.69, test accuracy 0.76-0.77; chance is a loss of ln 10 = 2.30 and accuracy 0.1. */
#define MAX_FINAL_LOSS 1.2
#define MAX_LATE_MEAN_LOSS 0.9
#define MIN_TEST_ACCURACY 0.6

TEST(train_short_run_learns)
{
    static const char *const sets[] = {
        "data.train_limit=4000", "data.val_size=500",  "data.test_limit=1000",
        "train.epochs=2",        "train.batch=32",     "train.threads=1",
        "train.log_seconds=1000",
    };
    struct job job;
    make_job(&job, sets, (int)OFFNAS_ARRAY_LEN(sets));
    const char *dir = run_dir("short");
    struct train_result r;
    int rc = train_fixed(&job, NULL, dir, &r);
    if (rc)
        fprintf(stderr, "train_fixed: %s\n", offnas_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, 0);

    long per_epoch = (4000 - 500) / 32;
    EXPECT_EQ_INT(r.steps, 2 * per_epoch);
    if (!(r.final_loss < MAX_FINAL_LOSS))
        fprintf(stderr, "final loss %.4f, bound %.2f\n", r.final_loss, MAX_FINAL_LOSS);
    CU_ASSERT(r.final_loss < MAX_FINAL_LOSS);
    if (!(r.test_accuracy > MIN_TEST_ACCURACY))
        fprintf(stderr, "test accuracy %.4f, bound %.2f\n", r.test_accuracy, MIN_TEST_ACCURACY);
    CU_ASSERT(r.test_accuracy > MIN_TEST_ACCURACY);
    CU_ASSERT(r.val_accuracy > MIN_TEST_ACCURACY);

    CU_ASSERT(file_exists(dir, "summary.json"));
    CU_ASSERT(file_exists(dir, "log.csv"));
    CU_ASSERT(file_exists(dir, "model.h5"));

    /* log.csv: header, then one row per step numbered 1..steps, epochs 1..2 */
    char *log = read_text(dir, "log.csv");
    CU_ASSERT_FATAL(log != NULL);
    char *save = NULL, *line = strtok_r(log, "\n", &save);
    CU_ASSERT_FATAL(line != NULL);
    CU_ASSERT_STRING_EQUAL(line, "step,epoch,loss,accuracy,lr");
    long rows = 0, bad = 0;
    double late_loss = 0;
    int late = 0;
    while ((line = strtok_r(NULL, "\n", &save))) {
        long step;
        int epoch;
        double loss, acc, lr;
        rows++;
        if (sscanf(line, "%ld,%d,%lf,%lf,%lf", &step, &epoch, &loss, &acc, &lr) != 5 ||
            step != rows || epoch != (int)((rows - 1) / per_epoch) + 1 || !(loss >= 0) ||
            acc < 0 || acc > 1) {
            if (bad++ < 3)
                fprintf(stderr, "log.csv row %ld: '%s'\n", rows, line);
            continue;
        }
        if (rows > r.steps - 50) {
            late_loss += loss;
            late++;
        }
    }
    free(log);
    EXPECT_EQ_INT(rows, r.steps);
    EXPECT_EQ_INT(bad, 0);
    CU_ASSERT_FATAL(late == 50);
    if (!(late_loss / late < MAX_LATE_MEAN_LOSS))
        fprintf(stderr, "mean loss of the last 50 steps %.4f, bound %.2f\n", late_loss / late,
                MAX_LATE_MEAN_LOSS);
    CU_ASSERT(late_loss / late < MAX_LATE_MEAN_LOSS);

    /* summary.json records the same run */
    char path[512];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    json_error_t err;
    json_t *s = json_load_file(path, 0, &err);
    CU_ASSERT_FATAL(s != NULL);
    EXPECT_NEAR(json_number_value(json_object_get(s, "test_accuracy")), r.test_accuracy, 1e-5);
    EXPECT_NEAR(json_number_value(json_object_get(s, "final_train_loss")), r.final_loss,
                1e-5 * (1 + r.final_loss));
    EXPECT_EQ_INT(json_integer_value(json_object_get(s, "steps")), r.steps);
    json_decref(s);
}

/* Two single-threaded runs with the same seeds write identical parameters, running statistics
 * and logs. */
TEST(train_is_deterministic)
{
    static const char *const sets[] = {
        "data.train_limit=1200", "data.val_size=200", "data.test_limit=200",
        "train.epochs=1",        "train.batch=32",    "train.threads=1",
        "train.steps=25",        "train.log_seconds=1000",
    };
    struct job job;
    make_job(&job, sets, (int)OFFNAS_ARRAY_LEN(sets));
    const char *a = run_dir("det_a"), *b = run_dir("det_b");
    struct train_result ra, rb;
    CU_ASSERT_EQUAL_FATAL(train_fixed(&job, NULL, a, &ra), 0);
    CU_ASSERT_EQUAL_FATAL(train_fixed(&job, NULL, b, &rb), 0);
    EXPECT_EQ_INT(ra.steps, 25);
    CU_ASSERT(ra.final_loss == rb.final_loss);
    CU_ASSERT(ra.test_accuracy == rb.test_accuracy);

    const char *names[] = {"params", "running_stats"};
    for (int k = 0; k < 2; k++) {
        hsize_t na = 0, nb = 0;
        float *pa = read_floats(a, "model.h5", names[k], &na);
        float *pb = read_floats(b, "model.h5", names[k], &nb);
        CU_ASSERT_FATAL(pa != NULL && pb != NULL);
        EXPECT_EQ_INT(na, nb);
        CU_ASSERT(na > 0);
        size_t differ = 0;
        for (hsize_t i = 0; i < na && i < nb; i++)
            differ += memcmp(&pa[i], &pb[i], sizeof(float)) != 0;
        if (differ)
            fprintf(stderr, "model.h5 /%s: %zu of %llu values differ\n", names[k], differ,
                    (unsigned long long)na);
        EXPECT_EQ_INT(differ, 0);
        free(pa);
        free(pb);
    }
    char *la = read_text(a, "log.csv"), *lb = read_text(b, "log.csv");
    CU_ASSERT_FATAL(la && lb);
    CU_ASSERT_STRING_EQUAL(la, lb);
    free(la);
    free(lb);

    /* a different seed gives different weights (the comparison above is not vacuous) */
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "train.seed=2"), 0);
    CU_ASSERT_EQUAL_FATAL(job_finalize(&job), 0);
    const char *c = run_dir("det_c");
    struct train_result rc_;
    CU_ASSERT_EQUAL_FATAL(train_fixed(&job, NULL, c, &rc_), 0);
    hsize_t na, nc;
    float *pa = read_floats(a, "model.h5", "params", &na);
    float *pc = read_floats(c, "model.h5", "params", &nc);
    CU_ASSERT_FATAL(pa && pc && na == nc);
    CU_ASSERT(memcmp(pa, pc, na * sizeof(float)) != 0);
    free(pa);
    free(pc);
}

/* model.h5 loads into a freshly built network (other initial weights) and evaluates to the
 * accuracy train_fixed recorded; a network of another shape refuses it. */
TEST(train_load_model_restores_accuracy)
{
    static const char *const sets[] = {
        "data.train_limit=2000", "data.val_size=300", "data.test_limit=600",
        "train.epochs=1",        "train.batch=32",    "train.threads=1",
        "train.log_seconds=1000",
    };
    struct job job;
    make_job(&job, sets, (int)OFFNAS_ARRAY_LEN(sets));
    const char *dir = run_dir("load");
    struct train_result r;
    CU_ASSERT_EQUAL_FATAL(train_fixed(&job, NULL, dir, &r), 0);
    CU_ASSERT(r.test_accuracy > 0.3); /* trained: a fresh network is near 0.1 */

    struct train_data td;
    CU_ASSERT_EQUAL_FATAL(train_data_load(&td, &job, NULL), 0);
    EXPECT_EQ_INT(td.test.count, 600);
    struct net *net = net_create(&job, job.train_batch, job.data_resize, td.test.channels,
                                 td.test.classes, 1, 987654321);
    CU_ASSERT_FATAL(net != NULL);
    double fresh;
    train_evaluate(net, &td.test, job.data_resize, &fresh, NULL);

    char path[512];
    snprintf(path, sizeof path, "%s/model.h5", dir);
    int rc = train_load_model(net, path);
    if (rc)
        fprintf(stderr, "train_load_model: %s\n", offnas_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    EXPECT_EQ_INT(net->mask_layer, -1);
    double acc, val, loss;
    train_evaluate(net, &td.test, job.data_resize, &acc, &loss);
    train_evaluate(net, &td.val, job.data_resize, &val, NULL);
    EXPECT_NEAR(acc, r.test_accuracy, 1e-12);
    EXPECT_NEAR(val, r.val_accuracy, 1e-12);
    CU_ASSERT(loss > 0 && loss < 2.3);
    if (!(fresh < r.test_accuracy - 0.1))
        fprintf(stderr, "fresh network accuracy %.4f vs trained %.4f\n", fresh, r.test_accuracy);
    CU_ASSERT(fresh < r.test_accuracy - 0.1);

    /* summary.json holds the same accuracy (6 significant digits) */
    snprintf(path, sizeof path, "%s/summary.json", dir);
    json_error_t err;
    json_t *s = json_load_file(path, 0, &err);
    CU_ASSERT_FATAL(s != NULL);
    EXPECT_NEAR(json_number_value(json_object_get(s, "test_accuracy")), acc, 1e-6);
    json_decref(s);
    net_free(net);

    /* another architecture: a clear error, not a silent partial load */
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.ops=k7e6, k7e6, k7e6, k7e6, k7e6, k7e6, k7e6, k7e6"),
                          0);
    CU_ASSERT_EQUAL_FATAL(job_finalize(&job), 0);
    net = net_create(&job, 8, job.data_resize, 1, 10, 1, 1);
    CU_ASSERT_FATAL(net != NULL);
    snprintf(path, sizeof path, "%s/model.h5", dir);
    CU_ASSERT_EQUAL(train_load_model(net, path), -1);
    EXPECT_CONTAINS(offnas_last_error(), "params");
    net_free(net);
    train_data_free(&td);
}

static const struct test_case TESTS[] = {
    CASE(train_short_run_learns),
    CASE(train_is_deterministic),
    CASE(train_load_model_restores_accuracy),
};

TEST_MAIN("train", TESTS)
