/* mpi_dist: the hook table of src/dist.h filled with the MPI layer's functions, the setup every
 * rank runs once its command has a job, and MPI's start and end (see mpi_dist.h). The roles
 * are in role.c, the trainer collectives in dp.c, the tables and profiler ranks in lutcast.c. */
#define _POSIX_C_SOURCE 200809L
#include "mpi_dist.h"
#include "mpi_internal.h"

#include "common.h"
#include "job.h"

#include <stdio.h>
#include <stdlib.h>

/* What a trainer's struct dist does under MPI. */
static const struct dist HOOKS = {
    .reduce_start = dp_reduce_start,
    .reduce_wait = dp_reduce_wait,
    .sum_doubles = dp_sum_doubles,
    .max_longs = dp_max_longs,
    .broadcast = dp_broadcast,
    .has_profiler = lutcast_has_profiler,
    .take_table = lutcast_take_table,
    .poll_table = lutcast_poll_table,
    .send_arch = lutcast_send_arch,
    .finish = lutcast_finish,
};

static struct dist dist;
static struct dp_ctx ctx;

void mpi_check(int rc, const char *call, const char *file, int line)
{
    if (rc == MPI_SUCCESS)
        return;
    char reason[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, reason, &len);
    fprintf(stderr, "offnas: rank %d: %s:%d: %s failed: %s\n", ctx.world_rank, file, line, call,
            reason);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* A trainer: dist_get() becomes the MPI dist over the trainers' communicator. */
static void install_trainer(const struct job *job)
{
    dist = HOOKS;
    MPI_CHECK(MPI_Comm_rank(ctx.trainers, &dist.rank));
    MPI_CHECK(MPI_Comm_size(ctx.trainers, &dist.size));
    dist.world_rank = ctx.world_rank;
    dist.world_size = ctx.world_size;
    dist.profilers = ctx.seen[0] + ctx.seen[1];
    dist.impl = &ctx;
    lutcast_listen(&ctx, job);
    if (dist.rank != 0)
        offnas_log_quiet = 1;
    dist_set(&dist);
    if (dist.rank == 0 && ctx.world_size > 1)
        offnas_log("mpi: %d trainer rank%s, %d profiler rank%s (mobile %d, edge %d) of %d",
                   dist.size, dist.size > 1 ? "s" : "", dist.profilers,
                   dist.profilers == 1 ? "" : "s", ctx.seen[0], ctx.seen[1], ctx.world_size);
}

/* dist_setup_hook: every rank learns its role; a profiler rank serves until the trainers
 * finish and returns 1, a trainer returns 0 with dist_get() set (see dist.h). */
static int setup(const struct job *job, const char *profiler_device, int *status)
{
    *status = 0;
    if (role_setup(&ctx, job, profiler_device))
        return -1;
    if (ctx.role >= 0) {
        offnas_log_quiet = 1;
        int rc = lutcast_run_profiler(job, &ctx, ctx.uses_tables);
        *status = rc ? 1 : 0;
        return 1;
    }
    install_trainer(job);
    return 0;
}

/* ---- start and end ---------------------------------------------------------------------- */

int mpi_dist_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int mpi_dist_start(int *argc, char ***argv)
{
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return offnas_error("MPI_Init failed");
    /* errors come back to MPI_CHECK, which names the rank and the call before aborting */
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &ctx.world_rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &ctx.world_size));
    dist_setup_hook = setup;
    return 0;
}

void mpi_dist_end(int status)
{
    if (status != 0 && status != DIST_EXIT_STOPPED && ctx.world_size > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, status);
    }
    MPI_CHECK(MPI_Finalize());
}
