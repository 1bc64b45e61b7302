/* cmd_profiler: `offnas profiler`: a profiler rank of an MPMD search (mpi/ serves the tables;
 * this command only parses the job and joins the ranks). */
#include "cmd.h"
#include "common.h"

#include <string.h>

static const char PROFILER_USAGE[] =
    "usage: mpirun ... : -np 1 offnas profiler --job FILE --device mobile|edge [--set K=V ...]\n"
    "\n"
    "A profiler rank of an MPMD search: measures every (layer, op) of the job's search space\n"
    "on this machine at batch 1, broadcasts the table to the trainers and saves it to\n"
    "cluster.profile_dir; then measures the network the trainers prefer each epoch, end to\n"
    "end, and broadcasts corrected tables until the search ends.\n";

int cmd_profiler(int argc, char **argv)
{
    const char *device = NULL;
    const struct cmd_option options[] = {{"--device", CMD_STRING, &device, 0, 0}};
    struct job job;
    int status = cmd_parse_job(&job, argc, argv, "profiler", PROFILER_USAGE, options, 1);
    if (status != CMD_CONTINUE)
        return status;
    if (!device || (strcmp(device, "mobile") && strcmp(device, "edge")))
        return cmd_usage_error("profiler: --device mobile or --device edge is required");
    status = cmd_join_ranks(&job, device, 0);
    return status == CMD_CONTINUE ? 0 : status;
}
