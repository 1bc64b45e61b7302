/* cmd_search: `offnas search`: the offloading-aware search of a job into a run folder, or its
 * continuation from the folder's checkpoint (--resume). */
#define _GNU_SOURCE
#include "cmd.h"
#include "common.h"
#include "dist.h"
#include "search.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char SEARCH_USAGE[] =
    "usage: offnas search --job FILE --out DIR [--set SECTION.KEY=VALUE ...]\n"
    "       offnas search --resume --out DIR [--job FILE] [--set ...]\n"
    "       [--until-epoch N]\n"
    "\n"
    "Searches ops, split point and sent channels together: weights with SGD on the training\n"
    "split, alpha/beta/gamma with Adam on the validation split, loss = CE + latency term from\n"
    "the device and edge profiles ([latency]) and the link ([network]). Writes DIR/log.csv (per\n"
    "epoch: E[T] and its parts, split distribution, kept channels, table versions),\n"
    "DIR/checkpoint.h5 (every cluster.checkpoint_every steps and each epoch; the previous one\n"
    "kept as checkpoint.prev.h5), DIR/lut_device.h5 and DIR/lut_edge.h5.\n"
    "--resume continues from the newest readable checkpoint (its job, unless --job is given;\n"
    "--set may change keys of the steps still to come, e.g. search.lambda after the warm-up).\n"
    "--until-epoch N ends the run after epoch N with a checkpoint (the schedules stay those of\n"
    "search.epochs): one weights warm-up, then --resume into copies of DIR for a lambda sweep.\n"
    "SIGTERM or SIGUSR1: writes a checkpoint and exits with status 3. Under mpirun or srun the\n"
    "ranks are data-parallel trainers, and the last ones profilers when cluster.profilers\n"
    "names them. Then: offnas derive --run DIR.\n";

/* Reads the job text a checkpoint of dir holds (the newest readable one) into job, then the
 * --set overrides. */
static int job_from_checkpoint(struct job *job, const char *dir, const struct cmd_job_options *o)
{
    char path[JOB_PATH_MAX * 2 + 16];
    snprintf(path, sizeof path, "%s/checkpoint.h5", dir);
    char *text = search_checkpoint_job(path);
    if (!text) {
        char why[1024];
        snprintf(why, sizeof why, "%s", offnas_last_error());
        snprintf(path, sizeof path, "%s/checkpoint.prev.h5", dir);
        if (access(path, F_OK))
            return offnas_error("%s", why); /* names checkpoint.h5 and what is wrong */
        text = search_checkpoint_job(path);
        if (!text)
            return offnas_error("%s: --resume: no readable checkpoint (%s; previous: %s)", dir,
                                why, offnas_last_error());
    }
    /* errors in the text name the checkpoint's attribute, not the temporary file */
    char origin[JOB_PATH_MAX * 2 + 32];
    snprintf(origin, sizeof origin, "%s: job", path);
    char tmp[] = "/tmp/offnas-job-XXXXXX";
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        free(text);
        return offnas_error("%s: cannot write a temporary job file: %s", tmp, strerror(errno));
    }
    fputs(text, f);
    int rc = fclose(f);
    job_defaults(job);
    rc = rc || job_load_as(job, tmp, origin);
    remove(tmp);
    /* keep naming the file the run was started from, as the checkpoint's text does */
    const char *from = "# offnas job from ";
    if (!rc && !strncmp(text, from, strlen(from)))
        snprintf(job->source, sizeof job->source, "%.*s", (int)strcspn(text + strlen(from), "\n"),
                 text + strlen(from));
    free(text);
    for (int i = 0; !rc && i < o->set_count; i++)
        rc = job_set(job, o->sets[i]);
    return rc || job_finalize(job) ? -1 : 0;
}

int cmd_search(int argc, char **argv)
{
    struct cmd_job_options opts = {0};
    const char *out = NULL;
    int resume = 0, until_epoch = 0;
    const struct cmd_option options[] = {{"--out", CMD_NEEDED, &out, 0, 0},
                                         {"--resume", CMD_FLAG, &resume, 0, 0},
                                         {"--until-epoch", CMD_COUNT, &until_epoch, 1, 1000000}};
    int status = cmd_parse(argc, argv, "search", SEARCH_USAGE, &opts, options, 3);
    if (status != CMD_CONTINUE)
        return status;
    struct job job;
    if (resume && !opts.job_path) {
        if (job_from_checkpoint(&job, out, &opts)) {
            fprintf(stderr, "offnas: %s\n", offnas_last_error());
            return 1;
        }
    } else if (cmd_load_job(&job, &opts)) {
        return 1;
    }
    status = cmd_join_ranks(&job, NULL, 1);
    if (status != CMD_CONTINUE)
        return status;
    int end = search_run(&job, out, resume, until_epoch);
    if (end == SEARCH_FAILED) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    if (end == SEARCH_STOPPED)
        return DIST_EXIT_STOPPED;
    if (end == SEARCH_PAUSED)
        return 0;
    if (dist_get()->rank == 0)
        printf("search: done; next: offnas derive --run %s\n", out);
    return 0;
}
