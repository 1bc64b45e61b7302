/* A plain MPI program for tests/slurm/test_mpi.sh: proves that the private test cluster runs
 * real Open MPI jobs (srun --mpi=pmix, one MPI_COMM_WORLD over heterogeneous components,
 * shared memory between ranks on one virtual node). Every rank prints one line:
 *   rank R of N node NODE sum S
 * where S is an allreduce over a 512 KiB buffer (large enough for Open MPI's shared-memory
 * path) that must equal 0 + 1 + ... + (N - 1). Exit status 1 on a wrong sum. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

enum { COUNT = 1 << 16 };

int main(int argc, char **argv)
{
    static double buffer[COUNT];
    int rank = 0, size = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    for (int i = 0; i < COUNT; i++)
        buffer[i] = rank;
    MPI_Allreduce(MPI_IN_PLACE, buffer, COUNT, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    double expected = (double)size * (size - 1) / 2;
    int wrong = 0;
    for (int i = 0; i < COUNT; i++)
        wrong |= buffer[i] != expected;
    const char *node = getenv("SLURMD_NODENAME");
    printf("rank %d of %d node %s sum %.0f\n", rank, size, node ? node : "?", buffer[COUNT - 1]);
    MPI_Finalize();
    return wrong;
}
