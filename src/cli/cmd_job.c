/* cmd_job: `offnas job`: the effective job (defaults, the file, the --set overrides), as INI
 * text or one key's value, for scripts that need to know what a run will use. */
#include "cmd.h"
#include "common.h"
#include "link.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char JOB_USAGE[] =
    "usage: offnas job [--job FILE] [--set SECTION.KEY=VALUE ...] [--key SECTION.KEY]\n"
    "\n"
    "Prints the job a command would run with these options: every key as INI text, or with\n"
    "--key only that key's value (one line). Checks the job like every command does.\n"
    "--key network.link prints the link the job models: NAME BANDWIDTH_MBPS RTT_MS (a preset's\n"
    "values, or the custom keys).\n";

int cmd_job(int argc, char **argv)
{
    const char *name = NULL;
    const struct cmd_option options[] = {{"--key", CMD_STRING, &name, 0, 0}};
    struct job job;
    int status = cmd_parse_job(&job, argc, argv, "job", JOB_USAGE, options, 1);
    if (status != CMD_CONTINUE)
        return status;
    if (!name) {
        job_write(&job, stdout);
        return 0;
    }
    if (!strcmp(name, "network.link")) {
        struct link link;
        if (link_from_job(&link, &job)) {
            fprintf(stderr, "offnas: %s\n", offnas_last_error());
            return 1;
        }
        printf("%s %g %g\n", link.name, link.bandwidth_mbps, link.rtt_ms);
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
