/* mpi_internal: what the files of the MPI layer share, and nothing outside mpi/ includes.
 *
 *   role.c     the world split into trainers and profiler ranks, their communicators
 *   dp.c       data-parallel collectives over the trainers (bucketed allreduce, sums, bcast)
 *   lutcast.c  lookup tables from the profiler ranks: the trainers' side and the profiler loop
 *   mpi_dist.c the hook table of src/dist.h, MPI start and end
 *
 * One dp_ctx per process holds the ranks, the role and the communicators; the struct dist the
 * commands see points at it (dist.impl). */
#ifndef OFFNAS_MPI_INTERNAL_H
#define OFFNAS_MPI_INTERNAL_H

#include "dist.h"
#include "latency.h"

#include <mpi.h>
#include <stdint.h>

#define DEVICES DIST_DEVICE_COUNT /* mobile (latency.device), edge (latency.edge) */
#define TAG_ARCH 11
#define TAG_STOP 12
#define TAG_PROBE_ADDR 13 /* the edge profiler's probe address, to the mobile profiler */
#define MAX_REQUESTS 4096

struct dp_ctx {
    int world_rank, world_size;
    int role;          /* -1: trainer, else the device this profiler rank serves */
    int seen[DEVICES]; /* profiler ranks per device in the world (0 or 1) */
    int profiler_world[DEVICES]; /* each device's profiler rank in the world, -1: none */
    int uses_tables;   /* some rank's command takes tables from the profilers */
    MPI_Comm trainers;
    MPI_Comm device[DEVICES]; /* {profiler, trainers}; MPI_COMM_NULL without a profiler */
    /* trainer side of each device: the posted broadcast of the next table message
     * (LATENCY_WIRE_MAX bytes, src/latency_wire.h), and the architecture message on its way */
    MPI_Request table_req[DEVICES];
    uint8_t *table_msg[DEVICES];
    int profiler_rank[DEVICES]; /* its world rank, for messages */
    MPI_Request arch_req[DEVICES];
    uint8_t *arch_msg[DEVICES];
    struct net *space; /* the profilers' search space, which their messages must be for */
    MPI_Request reqs[MAX_REQUESTS];
    int req_count;
    int finished;
};

/* The context behind a struct dist of the MPI layer. */
static inline struct dp_ctx *dp_ctx_of(struct dist *d) { return d->impl; }

/* Checks the return code of an MPI call: on failure prints one line naming the rank, the file,
 * the line and MPI's reason, and ends every rank with MPI_Abort (MPI_COMM_WORLD returns errors
 * instead of aborting inside MPI, see mpi_dist_start). */
#define MPI_CHECK(call) mpi_check((call), #call, __FILE__, __LINE__)
void mpi_check(int rc, const char *call, const char *file, int line);

/* ---- role.c ---- */

/* Every rank of the world calls it: learns all ranks' roles (an MPMD profiler's
 * profiler_device, else cluster.profilers of the job), checks that all ranks agree on a valid
 * split, and creates c->trainers and c->device[]. Fills role, seen and uses_tables. Returns 0,
 * or -1 with an error (on every rank when any rank rejected the job). */
int role_setup(struct dp_ctx *c, const struct job *job, const char *profiler_device);

/* ---- dp.c: the trainer collectives of struct dist ---- */

void dp_reduce_start(struct dist *d, float *buf, size_t n);
void dp_reduce_wait(struct dist *d);
void dp_sum_doubles(struct dist *d, double *v, int n);
void dp_max_longs(struct dist *d, long *v, int n);
void dp_broadcast(struct dist *d, void *buf, size_t bytes);

/* ---- lutcast.c: tables from the profiler ranks ---- */

/* Trainer side: builds the job's search space as the profilers do (their messages are
 * checked against it), allocates the message buffers of the devices with a profiler and
 * posts the broadcast of their first table (or, when no command uses tables, stops
 * listening). */
void lutcast_listen(struct dp_ctx *c, const struct job *job);
int lutcast_has_profiler(struct dist *d, int dev);
int lutcast_take_table(struct dist *d, int dev, struct latency_table *t);
int lutcast_poll_table(struct dist *d, int dev, struct latency_table *t);
void lutcast_send_arch(struct dist *d, const struct dist_arch *a);
void lutcast_finish(struct dist *d);

/* The profiler rank's life (c->role is its device): measures the job's search space here,
 * broadcasts and saves the table, then serves corrected tables for the architectures trainer 0
 * sends until it says stop. serve 0 (no command uses tables): only checks that the job's
 * network builds. Returns 0 or -1 with an error. */
int lutcast_run_profiler(const struct job *job, const struct dp_ctx *c, int serve);

#endif
