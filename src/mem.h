/* mem: how much memory a job needs and how much this process may have, so that a job too
 * large for the machine is refused with one line before its big allocations (offnas_malloc
 * aborts when one fails):
 *
 *     if (mem_check_job(job, B, channels, classes, 1, data_bytes, 1))
 *         return -1;  // "the job needs about 61.2 GB of memory (...), more than the 7.6 GB ..."
 *
 * The estimate counts what net_create allocates for a batch (activations and backward scratch
 * of every layer sized for its widest candidate, parameters, gradients, batch-norm buffers),
 * the SGD momentum, the input batches and the data slice; the limit is the smallest of the
 * physical memory, RLIMIT_AS, RLIMIT_DATA and the cgroup's memory.max. */
#ifndef OFFNAS_MEM_H
#define OFFNAS_MEM_H

#include "job.h"

#include <stddef.h>

/* The bytes this process may allocate, and what sets that limit ("physical memory",
 * "RLIMIT_AS", "RLIMIT_DATA", "cgroup memory.max") into why (why_size bytes). The node's
 * physical memory and cgroup limit are divided among the ranks on the node
 * (mem_local_ranks); the rlimits are per process. */

/* Ranks of this job on this node: OMPI_COMM_WORLD_LOCAL_SIZE (Open MPI), MPI_LOCALNRANKS
 * (MPICH) or SLURM_NTASKS_PER_NODE, the first that is a number in 1..65536; else 1. */
int mem_local_ranks(void);
double mem_limit_bytes(char *why, size_t why_size);

/* What a net of desc (net_create's arguments) allocates, in bytes. */
double mem_net_bytes(const struct net_desc *desc, int batch, int side, int in_channels,
                     int classes, int fixed);

/* Whether the job fits: a net of batch images (fixed or the supernet), the momentum, `batches`
 * input batches and data_bytes of data already loaded, against mem_limit_bytes. Returns 0, or
 * -1 with an error stating the estimate, its parts and the limit. */
int mem_check_job(const struct job *job, int batch, int in_channels, int classes, int fixed,
                  double data_bytes, int batches);

/* Whether one allocation of bytes fits: 0, or -1 with "WHAT: needs BYTES bytes (X GB), more
 * than the Y GB this machine allows (WHY)". */
int mem_check(const char *what, double bytes);

/* bytes as "61.2 GB", "512 MB", "12 kB" into buf. Returns buf. */
const char *mem_format(char *buf, size_t size, double bytes);

#endif
