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
#include "fixture.h"
#include "testing.h"
#include "tiny.h"

#include "common.h"
#include "data.h"
#include "dist.h"
#include "h5.h"
#include "job.h"
#include "net.h"
#include "op.h"
#include "train.h"

#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* ---- helpers -------------------------------------------------------------------------- */

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
    struct job job = fashion_job("data.train_limit=4000;data.val_size=500;data.test_limit=1000;"
                                 "train.epochs=2;train.batch=32;train.threads=1;"
                                 "train.log_seconds=1000");
    const char *dir = temp_path("short");
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
    struct job job = fashion_job("data.train_limit=1200;data.val_size=200;data.test_limit=200;"
                                 "train.epochs=1;train.batch=32;train.threads=1;train.steps=25;"
                                 "train.log_seconds=1000");
    const char *a = temp_path("det_a"), *b = temp_path("det_b");
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
    const char *c = temp_path("det_c");
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
    struct job job = fashion_job("data.train_limit=2000;data.val_size=300;data.test_limit=600;"
                                 "train.epochs=1;train.batch=32;train.threads=1;"
                                 "train.log_seconds=1000");
    const char *dir = temp_path("load");
    struct train_result r;
    CU_ASSERT_EQUAL_FATAL(train_fixed(&job, NULL, dir, &r), 0);
    CU_ASSERT(r.test_accuracy > 0.3); /* trained: a fresh network is near 0.1 */

    struct train_data td;
    CU_ASSERT_EQUAL_FATAL(train_data_load(&td, &job, NULL), 0);
    EXPECT_EQ_INT(td.test.count, 600);
    struct net *net = net_create(&job.net, job.train_batch, job.data_resize, td.test.channels,
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
    net = net_create(&job.net, 8, job.data_resize, 1, 10, 1, 1);
    CU_ASSERT_FATAL(net != NULL);
    snprintf(path, sizeof path, "%s/model.h5", dir);
    CU_ASSERT_EQUAL(train_load_model(net, path), -1);
    EXPECT_CONTAINS(offnas_last_error(), "params");
    net_free(net);
    train_data_free(&td);
}

/* A model whose weights hold a NaN, or whose running variance is negative, is refused with
 * the data set and index named; the net's mask layer is left as it was. */
TEST(train_load_model_refuses_nan_weights_and_negative_variances)
{
    struct job job = tiny_job(NULL);
    struct net *net = net_create(&job.net, 1, job.data_resize, 1, 10, 1, 1);
    CU_ASSERT_FATAL(net != NULL);
    const char *path = temp_path("nan_model.h5");
    net->params[4] = NAN;
    CU_ASSERT_EQUAL_FATAL(train_save_model(net, &job, path), 0);
    net->mask_layer = -1;
    CU_ASSERT_EQUAL(train_load_model(net, path), -1);
    EXPECT_CONTAINS(offnas_last_error(), "nan_model.h5: /params[4]: nan is not a finite number");
    net->params[4] = 0.0f;
    /* the head's batch norm comes first: its variances follow its head_channels means */
    net->stats[net->head_channels] = -1.0f;
    path = temp_path("variance_model.h5");
    CU_ASSERT_EQUAL_FATAL(train_save_model(net, &job, path), 0);
    CU_ASSERT_EQUAL(train_load_model(net, path), -1);
    char want[64];
    snprintf(want, sizeof want, "/running_stats[%d]: -1 is not a variance", net->head_channels);
    EXPECT_CONTAINS(offnas_last_error(), want);
    EXPECT_EQ_INT(net->mask_layer, -1);
    net_free(net);
}

/* ---- data shards over trainers --------------------------------------------------------- */

/* A copy of the local dist that claims to be trainer rank of size (train_data_load reads only
 * rank and size). */
static struct dist fake_trainer(int rank, int size)
{
    struct dist d = *dist_local();
    d.rank = rank;
    d.size = size;
    return d;
}

/* The job's data as one trainer loads it (one) and as trainers 0 and 1 of two do (two). */
static void load_on_one_and_two(const struct job *job, struct train_data *one,
                                struct train_data two[2])
{
    CU_ASSERT_EQUAL_FATAL(train_data_load(one, job, NULL), 0);
    for (int r = 0; r < 2; r++) {
        struct dist d = fake_trainer(r, 2);
        CU_ASSERT_EQUAL_FATAL(train_data_load(&two[r], job, &d), 0);
    }
}

static void free_one_and_two(struct train_data *one, struct train_data two[2])
{
    train_data_free(one);
    train_data_free(&two[0]);
    train_data_free(&two[1]);
}

/* Checks that sh->perm holds, for each owned shard, a permutation of its local rows; counts
 * the shards that are not. */
static int perm_errors(const struct train_shards *sh)
{
    int errors = 0;
    for (int j = 0; j < sh->owned; j++) {
        long lo = sh->offset[j], n = sh->size[j];
        unsigned char *seen = calloc((size_t)(n > 0 ? n : 1), 1);
        int bad = 0;
        for (long i = 0; i < n; i++) {
            long v = sh->perm[lo + i] - lo;
            if (v < 0 || v >= n || seen[v]++)
                bad = 1;
        }
        errors += bad;
        free(seen);
    }
    return errors;
}

/* Shard j's permutation in shard-relative rows equals shard k's of another holder. */
static int same_shard_perm(const struct train_shards *a, int j, const struct train_shards *b,
                           int k)
{
    if (a->size[j] != b->size[k])
        return 0;
    for (long i = 0; i < a->size[j]; i++)
        if (a->perm[a->offset[j] + i] - a->offset[j] != b->perm[b->offset[k] + i] - b->offset[k])
            return 0;
    return 1;
}

/* data.shards = 4, global batch 32 (8 per shard), on one trainer and on two (rank 0 holds shards
 * 0-1, rank 1 shards 2-3): the totals agree, each rank holds exactly its shards' rows (the
 * first and second half of the one-trainer split, image for image), the one-trainer batch of
 * steps 0, 1, 17 and the last of passes 0 and 1 (with and without flips) is the rank-0 batch
 * followed by the rank-1 batch (labels and float images bit for bit), and each pass's
 * per-shard order is a permutation of the shard's rows, the same shard's order on either
 * holder, different from pass to pass; the steps of a pass draw each row of a shard once. */
TEST(train_shards_two_trainers_equal_one)
{
    struct job job = fashion_job("data.train_limit=1800;data.val_size=200;data.test_limit=200;"
                                 "data.shards=4;train.batch=32");
    struct train_data one, two[2];
    load_on_one_and_two(&job, &one, two);

    long nt = 1600, nv = 200;
    EXPECT_EQ_INT(one.train_total, nt);
    EXPECT_EQ_INT(one.val_total, nv);
    EXPECT_EQ_INT(one.test_total, 200);
    EXPECT_EQ_INT(one.train.count, nt);
    EXPECT_EQ_INT(one.val.count, nv);
    for (int r = 0; r < 2; r++) {
        EXPECT_EQ_INT(two[r].train_total, one.train_total);
        EXPECT_EQ_INT(two[r].val_total, one.val_total);
        EXPECT_EQ_INT(two[r].test_total, one.test_total);
        EXPECT_EQ_INT(two[r].train.count, nt / 2); /* its two shards of 400 */
        EXPECT_EQ_INT(two[r].val.count, nv / 2);
        EXPECT_EQ_INT(two[r].test.count, 100);
        EXPECT_EQ_INT(two[r].train_shards.shards, 4);
        EXPECT_EQ_INT(two[r].train_shards.first, 2 * r);
        EXPECT_EQ_INT(two[r].train_shards.owned, 2);
        EXPECT_EQ_INT(two[r].train_shards.per_shard, 8);
        EXPECT_EQ_INT(two[r].train_shards.steps, one.train_shards.steps);
        EXPECT_EQ_INT(two[r].val_shards.steps, one.val_shards.steps);
    }
    EXPECT_EQ_INT(one.train_shards.owned, 4);
    EXPECT_EQ_INT(one.train_shards.per_shard, 8);
    EXPECT_EQ_INT(one.train_shards.steps, 50);
    EXPECT_EQ_INT(one.val_shards.steps, 6);

    /* each rank's rows are its half of the one-trainer rows, in order */
    size_t img = (size_t)one.train.height * one.train.width * one.train.channels;
    struct dataset *parts[3][3] = {{&one.train, &two[0].train, &two[1].train},
                                   {&one.val, &two[0].val, &two[1].val},
                                   {&one.test, &two[0].test, &two[1].test}};
    for (int k = 0; k < 3; k++) {
        struct dataset *all = parts[k][0], *a = parts[k][1], *b = parts[k][2];
        CU_ASSERT_FATAL(a->count + b->count == all->count);
        CU_ASSERT(memcmp(a->labels, all->labels, (size_t)a->count) == 0);
        CU_ASSERT(memcmp(b->labels, all->labels + a->count, (size_t)b->count) == 0);
        CU_ASSERT(memcmp(a->images, all->images, (size_t)a->count * img) == 0);
        CU_ASSERT(memcmp(b->images, all->images + (size_t)a->count * img,
                         (size_t)b->count * img) == 0);
    }

    int side = job.data_resize, ch = one.train.channels;
    size_t xs = (size_t)side * side * ch;
    struct train_batch tb, tr[2];
    train_batch_init(&tb, 32, side, ch, 32);
    train_batch_init(&tr[0], 16, side, ch, 16);
    train_batch_init(&tr[1], 16, side, ch, 16);
    long last = one.train_shards.steps - 1;
    const long steps[] = {0, 1, 17, last};
    long *pass0 = malloc((size_t)nt * sizeof(long));
    int mismatched = 0, flipped = 0;
    for (long pass = 0; pass < 2; pass++) {
        for (int flip = 0; flip < 2; flip++)
            for (size_t k = 0; k < OFFNAS_ARRAY_LEN(steps); k++) {
                long step = steps[k];
                train_shards_fill(&one.train_shards, &tb, &one.train, pass, step, flip);
                for (int r = 0; r < 2; r++)
                    train_shards_fill(&two[r].train_shards, &tr[r], &two[r].train, pass, step,
                                      flip);
                int same = 1;
                for (int r = 0; r < 2; r++) {
                    same &= memcmp(tb.labels + 16 * r, tr[r].labels, 16) == 0;
                    same &= memcmp(tb.x + 16 * r * xs, tr[r].x, 16 * xs * sizeof(float)) == 0;
                    same &= memcmp(tb.flip + 16 * r, tr[r].flip, 16) == 0;
                }
                for (int i = 0; i < 32; i++)
                    flipped += tb.flip[i] != 0;
                if (!same && mismatched++ < 3)
                    fprintf(stderr, "pass %ld step %ld flip %d: one-trainer batch != rank 0 + "
                            "rank 1 batches\n", pass, step, flip);
            }
        /* the pass's per-shard orders: permutations, the same on either holder */
        EXPECT_EQ_INT(one.train_shards.perm_pass, pass);
        EXPECT_EQ_INT(perm_errors(&one.train_shards), 0);
        for (int r = 0; r < 2; r++) {
            EXPECT_EQ_INT(perm_errors(&two[r].train_shards), 0);
            for (int j = 0; j < 2; j++)
                CU_ASSERT(same_shard_perm(&one.train_shards, 2 * r + j, &two[r].train_shards, j));
        }
        if (pass == 0)
            memcpy(pass0, one.train_shards.perm, (size_t)nt * sizeof(long));
        else
            CU_ASSERT(memcmp(pass0, one.train_shards.perm, (size_t)nt * sizeof(long)) != 0);
    }
    EXPECT_EQ_INT(mismatched, 0);
    CU_ASSERT(flipped > 0); /* flips were drawn, so the flip comparison is not vacuous */

    /* the steps of one pass draw every row of every shard exactly once (400 = 50 * 8) */
    unsigned char *drawn = calloc((size_t)nt, 1);
    long outside = 0;
    for (long step = 0; step <= last; step++) {
        train_shards_fill(&one.train_shards, &tb, &one.train, 1, step, 0);
        for (int j = 0; j < 4; j++)
            for (int i = 0; i < 8; i++) {
                long row = tb.order[j * 8 + i];
                const struct train_shards *sh = &one.train_shards;
                if (row < sh->offset[j] || row >= sh->offset[j] + sh->size[j] || row >= nt)
                    outside++;
                else
                    drawn[row]++;
            }
    }
    long once = 0;
    for (long i = 0; i < nt; i++)
        once += drawn[i] == 1;
    EXPECT_EQ_INT(outside, 0);
    EXPECT_EQ_INT(once, nt);
    free(drawn);

    /* validation shards: the same split of one step */
    train_shards_fill(&one.val_shards, &tb, &one.val, 0, 2, 0);
    for (int r = 0; r < 2; r++) {
        train_shards_fill(&two[r].val_shards, &tr[r], &two[r].val, 0, 2, 0);
        CU_ASSERT(memcmp(tb.labels + 16 * r, tr[r].labels, 16) == 0);
        CU_ASSERT(memcmp(tb.x + 16 * r * xs, tr[r].x, 16 * xs * sizeof(float)) == 0);
    }

    free(pass0);
    train_batch_free(&tb);
    train_batch_free(&tr[0]);
    train_batch_free(&tr[1]);
    free_one_and_two(&one, two);
}

/* Shards of unequal size (1791 training rows in 4 shards: 447, 448, 448, 448): the steps per
 * pass must be the same on every trainer and on one trainer (the smallest shard of all: 447 / 8
 * = 55), or the trainers disagree on the length of a pass (and one trainer draws images the
 * others never do). */
TEST(train_shards_steps_agree_with_unequal_shards)
{
    struct job job = fashion_job("data.train_limit=1991;data.val_size=200;data.test_limit=100;"
                                 "data.shards=4;train.batch=32");
    struct train_data one, two[2];
    load_on_one_and_two(&job, &one, two);
    EXPECT_EQ_INT(one.train_total, 1791);
    EXPECT_EQ_INT(one.train_shards.size[0], 447);
    EXPECT_EQ_INT(one.train_shards.size[3], 448);
    EXPECT_EQ_INT(one.train_shards.steps, 55);
    EXPECT_EQ_INT(two[0].train.count + two[1].train.count, 1791);
    if (two[1].train_shards.steps != one.train_shards.steps)
        fprintf(stderr, "steps per pass: one trainer %ld, rank 0 %ld, rank 1 %ld\n",
                one.train_shards.steps, two[0].train_shards.steps, two[1].train_shards.steps);
    EXPECT_EQ_INT(two[0].train_shards.steps, one.train_shards.steps);
    EXPECT_EQ_INT(two[1].train_shards.steps, one.train_shards.steps);
    free_one_and_two(&one, two);
}

/* A global batch that does not divide into the shards is refused with an error naming
 * train.batch (data.shards = 4 with batch 30 on one trainer; one shard per trainer with batch
 * 31 on two); shards that trainers cannot share are refused naming data.shards. */
TEST(train_data_load_refuses_batch_not_divisible_by_shards)
{
    struct job job = fashion_job("data.train_limit=600;data.val_size=100;data.test_limit=100;"
                                 "data.shards=4;train.batch=30");
    struct train_data td;
    EXPECT_EQ_INT(train_data_load(&td, &job, NULL), -1);
    EXPECT_CONTAINS(offnas_last_error(), "train.batch");

    struct dist r1 = fake_trainer(1, 2);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "data.shards=0"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "train.batch=31"), 0);
    CU_ASSERT_EQUAL_FATAL(job_finalize(&job), 0);
    EXPECT_EQ_INT(train_data_load(&td, &job, &r1), -1);
    EXPECT_CONTAINS(offnas_last_error(), "train.batch");

    CU_ASSERT_EQUAL_FATAL(job_set(&job, "data.shards=3"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "train.batch=30"), 0);
    CU_ASSERT_EQUAL_FATAL(job_finalize(&job), 0);
    EXPECT_EQ_INT(train_data_load(&td, &job, &r1), -1);
    EXPECT_CONTAINS(offnas_last_error(), "data.shards");

    /* the same job with a batch that divides loads (the refusals are about the batch) */
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "data.shards=4"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "train.batch=32"), 0);
    CU_ASSERT_EQUAL_FATAL(job_finalize(&job), 0);
    int rc = train_data_load(&td, &job, &r1);
    if (rc)
        fprintf(stderr, "train_data_load: %s\n", offnas_last_error());
    EXPECT_EQ_INT(rc, 0);
    if (!rc)
        train_data_free(&td);
}

/* A global batch larger than the training split is refused naming train.batch and the size of
 * the split, and leaves no model behind. */
TEST(train_fixed_refuses_batch_larger_than_training_split)
{
    struct job job = fashion_job("data.train_limit=600;data.val_size=100;data.test_limit=100;"
                                 "train.batch=512");
    const char *dir = temp_path("batch_too_large");
    struct train_result r;
    EXPECT_EQ_INT(train_fixed(&job, NULL, dir, &r), -1);
    EXPECT_CONTAINS(offnas_last_error(), "train.batch: 512 is larger than the 500 training images");
    char *model = read_text(dir, "model.h5");
    CU_ASSERT_PTR_NULL(model);
    free(model);
}

/* With data.val_size = 0 nothing is validated: the result and summary.json say so (NaN,
 * null) instead of a validation accuracy of 0.0 that was never measured. */
TEST(train_fixed_without_validation_reports_no_val_accuracy)
{
    struct job job = fashion_job("data.train_limit=300;data.val_size=0;data.test_limit=100;"
                                 "train.batch=50;train.epochs=1");
    const char *dir = temp_path("no_val");
    struct train_result r;
    int rc = train_fixed(&job, NULL, dir, &r);
    if (rc)
        fprintf(stderr, "train_fixed: %s\n", offnas_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(isnan(r.val_accuracy));
    CU_ASSERT(r.test_accuracy >= 0.0 && !isnan(r.test_accuracy)); /* the test split was measured */
    char *summary = read_text(dir, "summary.json");
    CU_ASSERT_PTR_NOT_NULL_FATAL(summary);
    EXPECT_CONTAINS(summary, "\"val_accuracy\": null");
    CU_ASSERT(strstr(summary, "\"test_accuracy\": null") == NULL);
    free(summary);
}

static const struct test_case TESTS[] = {
    CASE(train_short_run_learns),
    CASE(train_is_deterministic),
    CASE(train_load_model_restores_accuracy),
    CASE(train_load_model_refuses_nan_weights_and_negative_variances),
    CASE(train_shards_two_trainers_equal_one),
    CASE(train_shards_steps_agree_with_unequal_shards),
    CASE(train_data_load_refuses_batch_not_divisible_by_shards),
    CASE(train_fixed_refuses_batch_larger_than_training_split),
    CASE(train_fixed_without_validation_reports_no_val_accuracy),
};

TEST_MAIN("train", TESTS)
