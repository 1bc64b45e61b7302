#!/usr/bin/env bash
# Damaged and hand-edited data files (the HDF5 of `offnas data import`) read by train, search
# and eval: wrong ranks and element types, labels out of range, image and label counts that
# disagree, a class count out of range, splits whose images differ in shape, an empty test
# split (no test accuracy to report), a shape announcing terabytes. Each case exits 1 with
# one line naming the data file and the field (tests/damaged/lib.sh).
#
#   tests/damaged/data.sh BUILD/offnas SOURCE_DIR       (ctest: damaged.data)
set -u
source "$(dirname "$0")/lib.sh"
damaged_start damaged_data "${1:?usage: data.sh OFFNAS SOURCE_DIR}" "${2:-.}"


# h5py SCRIPT FILE: runs SCRIPT (python, with f the file open read-write and np numpy).
h5py() {
  "$py" -c "import sys, h5py, numpy as np
with h5py.File(sys.argv[1], 'r+') as f:
$(sed 's/^/    /' <<<"$1")" "$2" || die "h5py on $2: $1"
}

# A small data file: the first 1100 training and 300 test images of the fixture's.
small=$tmp/small.h5
"$py" -c 'import sys, h5py
with h5py.File(sys.argv[1], "r") as src, h5py.File(sys.argv[2], "w") as dst:
    for split, n in (("train", 1100), ("test", 300)):
        for what in ("images", "labels"):
            dst[split + "/" + what] = src[split + "/" + what][:n]
    for k, v in src.attrs.items():
        dst.attrs[k] = v' "$fashion_file" "$small" || die "cannot make $small"

# data CASE [PYTHON]: a copy of the small data file, edited by PYTHON; sets damaged_file.
data() {
  damaged_file=$(copy_case "$1.h5" "$small")
  [[ -z ${2:-} ]] || h5py "$2" "$damaged_file"
}

# train_on CASE FIELD_REGEX: train --arch of the fixture's arch.json on the case's data.
train_on() {
  damaged "$1" "$2" "$offnas" train --arch "$fx/search/arch.json" --out "$cases/out_$RANDOM" \
    --set "data.path=$damaged_file"
}

data rank2_labels 'del f["train/labels"]; f["train/labels"] = np.zeros((1100, 2), "u1")'
train_on "2-D training labels" '/train/labels: expected rank 1, found 2'
data float_images 'del f["train/images"]; f["train/images"] = np.zeros((1100, 1, 28, 28), "f4")'
train_on "float32 training images" '/train/images: expected uint8, found float32'
data rank3_images 'del f["train/images"]; f["train/images"] = np.zeros((1100, 28, 28), "u1")'
train_on "images of rank 3" '/train/images: expected rank 4, found 3'
data int_labels 'del f["test/labels"]; f["test/labels"] = np.zeros(300, "i8")'
train_on "int64 test labels" '/test/labels: expected uint8, found int64'
data label_10 'f["train/labels"][5] = 10'
train_on "a training label of 10 with 10 classes" '/train/labels\[5\] is 10, not below classes 10'
data test_label_200 'f["test/labels"][7] = 200'
train_on "a test label of 200" '/test/labels\[7\] is 200'
data fewer_images 'del f["train/images"]; f["train/images"] = np.zeros((900, 1, 28, 28), "u1")'
train_on "900 images for 1100 labels" '/train/images holds 900 images but /train/labels 1100'
data classes_0 'f.attrs["classes"] = np.int64(0)'
train_on "classes 0" 'classes.* 0, not in 1\.\.256'
data classes_wide 'f.attrs["classes"] = np.int64(1 << 40)'
train_on "classes beyond int" 'classes.* 1099511627776, not in 1\.\.256'
data no_classes 'del f.attrs["classes"]'
train_on "no classes attribute" 'attribute classes missing'
data no_test 'del f["test"]'
train_on "no test split" '/test/labels: missing'
data empty_test 'del f["test/images"]; del f["test/labels"]
f["test/images"] = np.zeros((0, 1, 28, 28), "u1"); f["test/labels"] = np.zeros(0, "u1")'
train_on "an empty test split (train)" '/test/labels: the test split is empty'
damaged "an empty test split (eval)" 'the test split is empty' \
  "$offnas" eval --run "$(copy_case eval_run "$fx/run")" --set "data.path=$damaged_file"
data rgb_test 'del f["test/images"]; f["test/images"] = np.zeros((300, 3, 28, 28), "u1")'
train_on "3-channel test images beside 1-channel training images" '/test/images: 3x28x28 images'
data small_test 'del f["test/images"]; f["test/images"] = np.zeros((300, 1, 14, 14), "u1")'
train_on "14x14 test images beside 28x28 training images" '/test/images: 1x14x14 images'
data huge 'del f["train/images"]
f.create_dataset("train/images", shape=(1100, 1, 65535, 65535), dtype="u1", chunks=(1, 1, 256, 256))'
train_on "training images of 65535x65535 (terabytes)" '/train/images: .*bytes.* more than'
data search_label 'f["train/labels"][3] = 99'
damaged "search: a training label of 99" '/train/labels\[3\] is 99' \
  "$offnas" search --job "$fx/job.ini" --out "$cases/search_out" --set "data.path=$damaged_file"

finish
