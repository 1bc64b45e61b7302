/* mpi_dist: the Open MPI side of offnas (DESIGN.md, "Distributed search").
 *
 * main calls mpi_dist_start when the program runs under mpirun or srun (a launcher's
 * variables are set), which initialises MPI and installs mpi_dist_setup as dist_setup_hook;
 * the commands then call dist_setup with their job, and every rank learns its role:
 *
 *   world = trainers (data-parallel, one communicator) + profiler ranks (one per device)
 *   per device with a profiler: a communicator {profiler, trainers}, profiler first, over
 *   which the lookup table is broadcast (MPI_Ibcast; the trainers keep one posted) and the
 *   preferred architecture is sent back each epoch (trainer 0 -> profiler).
 *
 * Roles come from the command (MPMD: `offnas profiler --device NAME` ranks) or, when no rank
 * is an explicit profiler, from the job's cluster.profilers: "mobile:1, edge:1" makes the last
 * ranks of the world the profilers, in that order. mpi_dist_end finalises MPI, or aborts every
 * rank when this one failed, so a failed rank never leaves the others waiting. */
#ifndef OFFNAS_MPI_DIST_H
#define OFFNAS_MPI_DIST_H

/* 1 when a launcher started this process (OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK). */
int mpi_dist_launched(void);

/* MPI_Init and the hook. Returns 0 or -1 with an error. */
int mpi_dist_start(int *argc, char ***argv);

/* Ends MPI after a command returned status: finalise for 0 and for a stop after a
 * checkpoint, MPI_Abort for a failure. */
void mpi_dist_end(int status);

#endif
