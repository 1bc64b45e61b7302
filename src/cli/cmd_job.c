/* cmd_job: `offnas job`: the effective job (defaults, the file, the --set overrides), as INI
 * text or one key's value, for scripts that need to know what a run will use. */
#include "cmd.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>

static const char JOB_USAGE[] =
    "usage: offnas job [--job FILE] [--set SECTION.KEY=VALUE ...] [--key SECTION.KEY]\n"
    "\n"
    "Prints the job a command would run with these options: every key as INI text, or with\n"
    "--key only that key's value (one line). Checks the job like every command does.\n";

int cmd_job(int argc, char **argv)
{
    struct cmd_job_options opts = {0};
    const char *name = NULL;
    const struct cmd_option options[] = {{"--key", CMD_STRING, &name, 0, 0}};
    int status = cmd_parse(argc, argv, "job", JOB_USAGE, &opts, options, 1);
    if (status != CMD_CONTINUE)
        return status;
    struct job job;
    if (cmd_load_job(&job, &opts))
        return 1;
    if (!name) {
        job_write(&job, stdout);
        return 0;
    }
    char value[JOB_TEXT_MAX + 64];
    if (job_get(&job, name, value, sizeof value)) {
        fprintf(stderr, "offnas: --key %s\n", offnas_last_error());
        return 1;
    }
    puts(value);
    return 0;
}
