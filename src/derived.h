/* derived: arch.json, the network `offnas derive` fixed from a search: its ops, split point,
 * kept channels and the search's job text. `offnas train --arch` and `offnas eval` read it back
 * through derived_load and build the derived network's job with derived_job. */
#ifndef OFFNAS_DERIVED_H
#define OFFNAS_DERIVED_H

#include "job.h"
#include "train.h"

#include <jansson.h>

struct derived {
    json_t *root;          /* the whole file; the strings below point into it */
    const char *job_text;  /* the search's job (INI text) */
    char ops[JOB_TEXT_MAX]; /* "k3e1, skip, ...": one op per layer, as net.ops */
    struct train_split split; /* split point, kept channels and their 0/1 mask */
    const char *lut_device, *lut_edge; /* the tables the search used ("" when absent) */
};

/* Reads arch.json at path into d. Returns 0, or -1 with an error naming the file and the
 * field; d->root is the caller's to json_decref either way. */
int derived_load(struct derived *d, const char *path);

/* Builds the job of a derived network: the search's job (written to dir/search-job.ini), its
 * ops as net.ops, then the overrides sets[0..set_count). Checks the split against the layers.
 * Returns 0, or -1 with an error. */
int derived_job(struct job *job, const struct derived *d, const char *dir,
                const char *const *sets, int set_count);

#endif
