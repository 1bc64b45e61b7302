/* role: which rank of the world trains and which profiles a device, and the communicators that
 * follow (see mpi_dist.h). Roles come from the command (MPMD: `offnas profiler --device NAME`
 * ranks) or, when no rank is an explicit profiler, from the job's cluster.profilers, which
 * makes the last ranks of the world the profilers. */
#define _POSIX_C_SOURCE 200809L
#include "mpi_internal.h"

#include "common.h"
#include "job.h"

#include <stdlib.h>
#include <string.h>

/* What every rank knows alone, gathered from all: each rank's explicit (MPMD) profiler device
 * (-1: none), and whether any rank's command uses tables. */
struct claims {
    int *device;       /* per world rank */
    int explicit_profilers;
    int uses_tables;
};

/* Parses cluster.profilers ("mobile:1, edge:1") into counts per device. */
static int parse_profilers(const char *text, int counts[DEVICES])
{
    counts[0] = counts[1] = 0;
    char buf[JOB_TEXT_MAX];
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ' || *item == '\t')
            item++;
        if (!*item)
            continue;
        char *colon = strchr(item, ':');
        char *end = NULL;
        long n = colon ? strtol(colon + 1, &end, 10) : -1;
        if (colon)
            *colon = 0;
        while (end && (*end == ' ' || *end == '\t'))
            end++;
        int dev = -1;
        for (int i = 0; i < DEVICES; i++) {
            size_t len = strlen(DIST_DEVICE_NAMES[i]);
            if (!strncmp(item, DIST_DEVICE_NAMES[i], len) && (item[len] == 0 || item[len] == ' '))
                dev = i;
        }
        if (dev < 0 || !end || *end || n < 0 || n > 1)
            return offnas_error("cluster.profilers: '%s' is not mobile:N or edge:N with N 0 or 1 "
                                "(one profiler rank per device)",
                                text);
        counts[dev] = (int)n;
    }
    return 0;
}

static void gather_claims(const struct dp_ctx *c, const char *profiler_device, struct claims *cl)
{
    /* a trainer command that searches says so in its second word */
    int mine[2] = {-1, profiler_device ? 0 : dist_uses_tables};
    if (profiler_device)
        mine[0] = strcmp(profiler_device, DIST_DEVICE_NAMES[DIST_EDGE]) ? DIST_MOBILE : DIST_EDGE;
    int *all = offnas_malloc((size_t)c->world_size * 2 * sizeof(int));
    MPI_CHECK(MPI_Allgather(mine, 2, MPI_INT, all, 2, MPI_INT, MPI_COMM_WORLD));
    cl->device = offnas_malloc((size_t)c->world_size * sizeof(int));
    cl->explicit_profilers = cl->uses_tables = 0;
    for (int r = 0; r < c->world_size; r++) {
        cl->device[r] = all[2 * r];
        cl->explicit_profilers += all[2 * r] >= 0;
        cl->uses_tables |= all[2 * r + 1];
    }
    free(all);
}

/* role[r]: -1 for a trainer, else the device rank r profiles. Returns 0 or -1 with an error. */
static int assign_roles(const struct dp_ctx *c, const struct job *job, const struct claims *cl,
                        int *role)
{
    int counts[DEVICES];
    int rc = parse_profilers(job->cluster_profilers, counts);
    /* a command without tables (train) makes every rank a trainer: the search's job file
     * keeps its profilers line for the search */
    if (!cl->uses_tables)
        counts[0] = counts[1] = 0;
    for (int r = 0; r < c->world_size; r++)
        role[r] = cl->explicit_profilers ? cl->device[r] : -1;
    if (!rc && !cl->explicit_profilers) {
        int p = counts[0] + counts[1];
        if (p >= c->world_size)
            rc = offnas_error("cluster.profilers: %d profiler ranks leave no trainer among %d "
                              "ranks",
                              p, c->world_size);
        for (int i = 0, r = c->world_size - p; !rc && i < DEVICES; i++)
            for (int k = 0; k < counts[i]; k++)
                role[r++] = i;
    }
    return rc;
}

/* Counts the profilers per device into seen; at most one per device and at least one trainer.
 * Returns 0 or -1 with an error. */
static int check_roles(const struct dp_ctx *c, const int *role, int seen[DEVICES])
{
    int trainers = 0;
    seen[0] = seen[1] = 0;
    for (int r = 0; r < c->world_size; r++) {
        if (role[r] < 0)
            trainers++;
        else
            seen[role[r]]++;
    }
    if (seen[0] > 1 || seen[1] > 1)
        return offnas_error("profiler: %d mobile and %d edge profiler ranks: one per device is "
                            "supported",
                            seen[0], seen[1]);
    if (trainers == 0)
        return offnas_error("no trainer rank in this MPI job (every rank is a profiler)");
    return 0;
}

/* Every rank reaches the same verdict from the same inputs; a rank that did not (a different
 * job file) is caught here. Returns 0 when no rank failed, else -1 (with this rank's error, or
 * one pointing at the rank that failed). */
static int agree(int rc)
{
    int bad = rc != 0, any_bad = 0;
    MPI_CHECK(MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (!any_bad)
        return 0;
    return bad ? -1 : offnas_error("another rank rejected the job (see its message)");
}

/* The trainers' communicator, and per device with a profiler one of {profiler, trainers} with
 * the profiler as rank 0 and the trainers after it in trainer order. */
static void split_communicators(struct dp_ctx *c, const int *role)
{
    int me = role[c->world_rank];
    MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, me < 0 ? 0 : 1, c->world_rank, &c->trainers));
    int trainer_rank = 0;
    for (int r = 0; r < c->world_rank; r++)
        trainer_rank += role[r] < 0;
    for (int dev = 0; dev < DEVICES; dev++) {
        c->device[dev] = MPI_COMM_NULL;
        c->table_req[dev] = c->arch_req[dev] = MPI_REQUEST_NULL;
        if (!c->seen[dev])
            continue;
        int member = me < 0 || me == dev;
        MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, member ? 0 : MPI_UNDEFINED,
                                 me == dev ? 0 : 1 + trainer_rank, &c->device[dev]));
    }
}

int role_setup(struct dp_ctx *c, const struct job *job, const char *profiler_device)
{
    struct claims cl;
    gather_claims(c, profiler_device, &cl);
    int *role = offnas_malloc((size_t)c->world_size * sizeof(int));
    int rc = assign_roles(c, job, &cl, role);
    if (!rc)
        rc = check_roles(c, role, c->seen);
    free(cl.device);
    if (agree(rc)) {
        free(role);
        return -1;
    }
    c->uses_tables = cl.uses_tables;
    c->role = role[c->world_rank];
    for (int dev = 0; dev < DEVICES; dev++)
        c->profiler_world[dev] = -1;
    for (int r = 0; r < c->world_size; r++)
        if (role[r] >= 0)
            c->profiler_world[role[r]] = r;
    split_communicators(c, role);
    free(role);
    return 0;
}
