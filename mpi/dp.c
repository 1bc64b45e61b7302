/* dp: the data-parallel collectives over the trainers' communicator: the bucketed gradient
 * allreduce (non-blocking, in the order the buckets come), small blocking sums and maxima, and
 * the broadcast of trainer 0's state. */
#include "mpi_internal.h"

#include "common.h"

void dp_reduce_wait(struct dist *d)
{
    struct dp_ctx *m = dp_ctx_of(d);
    MPI_CHECK(MPI_Waitall(m->req_count, m->reqs, MPI_STATUSES_IGNORE));
    m->req_count = 0;
}

void dp_reduce_start(struct dist *d, float *buf, size_t n)
{
    struct dp_ctx *m = dp_ctx_of(d);
    if (m->req_count == MAX_REQUESTS)
        dp_reduce_wait(d);
    OFFNAS_ASSERT(n <= (size_t)INT32_MAX);
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, m->trainers,
                             &m->reqs[m->req_count++]));
    /* Open MPI advances non-blocking collectives inside MPI calls: a test here moves the
     * earlier buckets along while backward computes the next ones */
    int done;
    MPI_CHECK(MPI_Testall(m->req_count, m->reqs, &done, MPI_STATUSES_IGNORE));
    if (done)
        m->req_count = 0;
}

void dp_sum_doubles(struct dist *d, double *v, int n)
{
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, dp_ctx_of(d)->trainers));
}

void dp_max_longs(struct dist *d, long *v, int n)
{
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_LONG, MPI_MAX, dp_ctx_of(d)->trainers));
}

void dp_broadcast(struct dist *d, void *buf, size_t bytes)
{
    char *p = buf;
    while (bytes) {
        int chunk = bytes > (1u << 30) ? 1 << 30 : (int)bytes;
        MPI_CHECK(MPI_Bcast(p, chunk, MPI_BYTE, 0, dp_ctx_of(d)->trainers));
        p += chunk;
        bytes -= (size_t)chunk;
    }
}
