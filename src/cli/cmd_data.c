/* cmd_data: `offnas data import fashion-mnist ...` and `offnas data info FILE.h5`. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "common.h"
#include "data.h"
#include "h5.h"

#define DEFAULT_FASHION_DIR "/usr/share/datasets/fashion-mnist"

static const char DATA_USAGE[] =
    "usage: offnas data import fashion-mnist [--from DIR] --out FILE.h5\n"
    "       offnas data info FILE.h5\n"
    "\n"
    "  import   convert a data set into an offnas HDF5 data file\n"
    "  info     print the splits, image shape and classes of a data file\n"
    "\n"
    "See `offnas data import --help` and `offnas data info --help`.\n";

static const char IMPORT_USAGE[] =
    "usage: offnas data import fashion-mnist [--from DIR] --out FILE.h5\n"
    "\n"
    "Converts the four Fashion-MNIST idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte,\n"
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; gzip'd .gz or plain) into an HDF5 data\n"
    "file: /train and /test, each with images uint8 [N,1,28,28] and labels uint8 [N].\n"
    "The file is written under a temporary name and renamed, so an existing FILE.h5 is only\n"
    "replaced by a complete one.\n"
    "\n"
    "  --from DIR     directory of the idx files (default " DEFAULT_FASHION_DIR ",\n"
    "                 from the Debian package dataset-fashion-mnist)\n"
    "  --out FILE.h5  the HDF5 file to write (required)\n";

static const char INFO_USAGE[] =
    "usage: offnas data info FILE.h5\n"
    "\n"
    "Prints the source, classes, and for each split the image count, shape and images per\n"
    "class of an offnas HDF5 data file.\n";

static int is_help(const char *arg) { return !strcmp(arg, "--help") || !strcmp(arg, "-h"); }

static int has_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (is_help(argv[i]))
            return 1;
    return 0;
}

static int usage_error(const char *command, const char *message, const char *arg)
{
    fprintf(stderr, "offnas: %s: %s%s%s (see offnas %s --help)\n", command, message,
            arg ? " " : "", arg ? arg : "", command);
    return 2;
}

/* Matches "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i past the value. Returns 1
 * on a match (value in *value, NULL when missing), 0 when argv[*i] is another argument. */
static int take_option(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t len = strlen(name);
    if (strncmp(argv[*i], name, len) != 0)
        return 0;
    if (argv[*i][len] == '=') {
        *value = argv[*i] + len + 1;
        return 1;
    }
    if (argv[*i][len] != '\0')
        return 0;
    *value = *i + 1 < argc ? argv[++*i] : NULL;
    return 1;
}

/* Prints the image count, shape and per-class counts of one split; 0, or -1 with an error. */
static int print_split(hid_t file, const char *path, const char *split, int64_t classes)
{
    char images_name[64], labels_name[64];
    snprintf(images_name, sizeof images_name, "/%s/images", split);
    snprintf(labels_name, sizeof labels_name, "/%s/labels", split);
    hsize_t dims[4], label_count;
    OFFNAS_TRY(h5_shape(file, images_name, H5_U8, 4, dims));
    unsigned char *labels = h5_read(file, labels_name, H5_U8, 1, &label_count);
    if (!labels)
        return -1;
    if (label_count != dims[0]) {
        free(labels);
        return offnas_error("%s: %s holds %llu images but %s %llu labels", path, images_name,
                            (unsigned long long)dims[0], labels_name,
                            (unsigned long long)label_count);
    }
    long per_class[256] = {0};
    for (hsize_t i = 0; i < label_count; i++)
        per_class[labels[i]]++;
    free(labels);
    printf("  %-12s %llu images, %llux%llux%llu (CxHxW) uint8\n", split,
           (unsigned long long)dims[0], (unsigned long long)dims[1],
           (unsigned long long)dims[2], (unsigned long long)dims[3]);
    printf("  %-12s", "");
    for (int64_t c = 0; c < classes && c < 256; c++)
        printf(" %ld", per_class[c]);
    printf("  (images per class)\n");
    for (int c = (int)classes; c < 256; c++)
        if (per_class[c])
            printf("  warning: %ld labels are %d, not below classes %lld\n", per_class[c], c,
                   (long long)classes);
    return 0;
}

static int data_info(const char *path)
{
    hid_t file = h5_open_read(path);
    if (file < 0)
        return -1;
    int64_t classes;
    char *source = NULL, *names = NULL;
    int rc = -1;
    if (h5_attr_get_int(file, "classes", &classes))
        goto done;
    if (h5_attr_exists(file, "source") > 0 && !(source = h5_attr_get_string(file, "source")))
        goto done;
    if (h5_attr_exists(file, "class_names") > 0 &&
        !(names = h5_attr_get_string(file, "class_names")))
        goto done;
    printf("%s\n", path);
    printf("  %-12s %s\n", "source", source ? source : "(not recorded)");
    printf("  %-12s %lld%s%s\n", "classes", (long long)classes, names ? ": " : "",
           names ? names : "");
    static const char *const SPLITS[] = {"train", "test"};
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(SPLITS); i++) {
        int found = h5_exists(file, SPLITS[i]);
        if (found < 0)
            goto done;
        if (!found) {
            printf("  %-12s (missing)\n", SPLITS[i]);
            continue;
        }
        if (print_split(file, path, SPLITS[i], classes))
            goto done;
    }
    rc = 0;
done:
    free(source);
    free(names);
    h5_close(file);
    return rc;
}

static int cmd_data_info(int argc, char **argv)
{
    if (has_help(argc, argv)) {
        fputs(INFO_USAGE, stdout);
        return 0;
    }
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return usage_error("data info", "unknown option", argv[i]);
        if (path)
            return usage_error("data info", "unexpected argument", argv[i]);
        path = argv[i];
    }
    if (!path)
        return usage_error("data info", "missing FILE.h5", NULL);
    if (data_info(path)) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    return 0;
}

static int cmd_data_import(int argc, char **argv)
{
    if (has_help(argc, argv)) {
        fputs(IMPORT_USAGE, stdout);
        return 0;
    }
    const char *dataset = NULL, *from = DEFAULT_FASHION_DIR, *out = NULL, *value;
    for (int i = 1; i < argc; i++) {
        if (take_option(argc, argv, &i, "--from", &value)) {
            if (!value || !*value)
                return usage_error("data import", "--from needs a directory", NULL);
            from = value;
        } else if (take_option(argc, argv, &i, "--out", &value)) {
            if (!value || !*value)
                return usage_error("data import", "--out needs a file name", NULL);
            out = value;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return usage_error("data import", "unknown option", argv[i]);
        } else if (dataset) {
            return usage_error("data import", "unexpected argument", argv[i]);
        } else {
            dataset = argv[i];
        }
    }
    if (!dataset)
        return usage_error("data import", "missing the data set name (fashion-mnist)", NULL);
    if (strcmp(dataset, "fashion-mnist") != 0)
        return usage_error("data import", "unknown data set (known: fashion-mnist):", dataset);
    if (!out)
        return usage_error("data import", "missing --out FILE.h5", NULL);

    double started = offnas_now();
    if (data_import_idx(from, out)) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    double seconds = offnas_now() - started;
    /* Read the counts back from the file just written: the summary then describes the file. */
    hsize_t train[4], test[4];
    hid_t file = h5_open_read(out);
    if (file < 0 || h5_shape(file, "/train/images", H5_U8, 4, train) ||
        h5_shape(file, "/test/images", H5_U8, 4, test)) {
        h5_close(file);
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    h5_close(file);
    printf("imported fashion-mnist: %llu train + %llu test images %llux%llux%llu -> %s "
           "(%.1f s)\n",
           (unsigned long long)train[0], (unsigned long long)test[0],
           (unsigned long long)train[1], (unsigned long long)train[2],
           (unsigned long long)train[3], out, seconds);
    return 0;
}

int cmd_data(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("data", "missing subcommand (import, info)", NULL);
    if (is_help(argv[1])) {
        fputs(DATA_USAGE, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "import"))
        return cmd_data_import(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info"))
        return cmd_data_info(argc - 1, argv + 1);
    return usage_error("data", "unknown subcommand", argv[1]);
}
