/* cmd: the option parsing every job-driven command shares (declared in cmd.h). In the core
 * library, so tests can call the commands. */
#include "cmd.h"
#include "common.h"

#include <stdarg.h>
#include <string.h>

int cmd_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("offnas: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    return 2;
}

int cmd_take_job_option(struct cmd_job_options *o, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    if (strcmp(arg, "--job") && strcmp(arg, "--set"))
        return 0;
    if (*i + 1 >= argc) {
        cmd_usage_error("%s needs a value", arg);
        return -1;
    }
    const char *value = argv[++*i];
    if (!strcmp(arg, "--job")) {
        o->job_path = value;
    } else {
        if (o->set_count >= (int)OFFNAS_ARRAY_LEN(o->sets)) {
            cmd_usage_error("too many --set options");
            return -1;
        }
        o->sets[o->set_count++] = value;
    }
    return 1;
}

int cmd_load_job(struct job *job, const struct cmd_job_options *o)
{
    job_defaults(job);
    int rc = o->job_path ? job_load(job, o->job_path) : 0;
    for (int i = 0; !rc && i < o->set_count; i++)
        rc = job_set(job, o->sets[i]);
    if (!rc)
        rc = job_finalize(job);
    if (rc) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return -1;
    }
    return 0;
}
