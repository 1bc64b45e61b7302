/* derived: arch.json, the network `offnas derive` fixed from a search: its ops, split point,
 * kept channels and the search's job text. `offnas train --arch` and `offnas eval` read it back
 * through derived_load and build the derived network's job with derived_job. */
#ifndef OFFNAS_DERIVED_H
#define OFFNAS_DERIVED_H

#include "derive.h"
#include "job.h"
#include "net.h"
#include "train.h"

#include <jansson.h>

struct derived {
    char path[JOB_PATH_MAX * 2]; /* the file, for the messages of derived_job */
    json_t *root;          /* the whole file; the strings below point into it */
    const char *job_text;  /* the search's job (INI text) */
    char ops[JOB_TEXT_MAX]; /* "k3e1, skip, ...": one op per layer, as net.ops */
    struct train_split split; /* split point, kept channels and their 0/1 mask */
    int total_channels;    /* channels of the feature map at the split (0 at 0 and L + 1) */
    const char *lut_device, *lut_edge; /* the tables the search used ("" when absent) */
    const char *method;    /* "search" (absent), "neurosurgeon", "nas-then-split", "prune-split" */
};

/* What arch.json records of a derived network (the writer's view). */
struct derived_record {
    const char *method;          /* see struct derived */
    const char *rule;            /* how split and channels were chosen: "accuracy", "argmax",
                                  * "all-channels", "pruned", "pruned-pinned" */
    const struct net *space;     /* the search space (candidate names of r->ops) */
    const struct derive_result *r; /* ops, chosen; argmax and the per-split table if rule is
                                  * "accuracy" or "argmax" */
    const struct derive_choice *choice; /* the one recorded as split_point / channels */
    double all_device_ms, all_edge_ms; /* the derived ops all on one side */
    const char *layers;          /* net.layers text */
    int input_side;
    const char *wire, *network;
    const char *search_run, *lut_device, *lut_edge, *job_text;
    double max_accuracy_drop;
};

/* A latency breakdown as the JSON object {device, transfer, edge, total} (new reference). */
json_t *derived_latency_json(const struct arch_latency *l);

/* Writes arch.json at path (temporary file, renamed). Returns 0 or -1 with an error. */
int derived_write(const char *path, const struct derived_record *rec);

/* Reads arch.json at path into d and checks what it can without the job: every field there
 * with its JSON type, op names offnas parses, integers in range before they are narrowed,
 * channel indices below total_channels and listed once, kept_channels their count. Returns 0,
 * or -1 with an error "PATH: FIELD: what is wrong"; d->root is the caller's to json_decref
 * either way. */
int derived_load(struct derived *d, const char *path);

/* Builds the job of a derived network: the search's job (written to dir/search-job.ini), its
 * ops as net.ops, then the overrides sets[0..set_count). Checks the split against the layers
 * and total_channels against the layer's channels there. Returns 0, or -1 with an error naming
 * d->path (except for a bad override). */
int derived_job(struct job *job, const struct derived *d, const char *dir,
                const char *const *sets, int set_count);

#endif
