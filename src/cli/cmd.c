/* cmd: what the commands share (declared in cmd.h): option parsing, job loading, joining the
 * ranks. In the offnas_cli library, so tests can call the
 * commands. */
#include "cmd.h"
#include "common.h"
#include "dist.h"

#include <stdarg.h>
#include <stdlib.h>
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

int cmd_parse(int argc, char **argv, const char *command, const char *usage,
              struct cmd_job_options *job, const struct cmd_option *options, int count)
{
    for (int i = 1; i < argc; i++) {
        if (job) {
            int taken = cmd_take_job_option(job, argc, argv, &i);
            if (taken < 0)
                return 2;
            if (taken)
                continue;
        }
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        const struct cmd_option *o = NULL;
        for (int k = 0; k < count && !o; k++)
            if (!strcmp(argv[i], options[k].name))
                o = &options[k];
        if (o && o->kind == CMD_FLAG) {
            *(int *)o->target = 1;
            continue;
        }
        if (!o || i + 1 >= argc)
            return cmd_usage_error("%s: unknown or incomplete option '%s'", command, argv[i]);
        const char *value = argv[++i];
        if (o->kind == CMD_STRING || o->kind == CMD_NEEDED) {
            *(const char **)o->target = value;
            continue;
        }
        char *end;
        long v = strtol(value, &end, 10);
        if (*end || v < o->min || v > o->max)
            return cmd_usage_error("%s: %s: '%s' is not a valid count", command, o->name, value);
        *(int *)o->target = (int)v;
    }
    for (int k = 0; k < count; k++)
        if (options[k].kind == CMD_NEEDED && !*(const char **)options[k].target)
            return cmd_usage_error("%s: %s is required", command, options[k].name);
    return CMD_CONTINUE;
}

int cmd_parse_job(struct job *job, int argc, char **argv, const char *command, const char *usage,
                  const struct cmd_option *options, int count)
{
    struct cmd_job_options opts = {0};
    int status = cmd_parse(argc, argv, command, usage, &opts, options, count);
    if (status != CMD_CONTINUE)
        return status;
    return cmd_load_job(job, &opts) ? 1 : CMD_CONTINUE;
}

int cmd_join_ranks(const struct job *job, const char *profiler_device, int uses_tables)
{
    dist_uses_tables = uses_tables;
    int status = 0, role = dist_setup(job, profiler_device, &status);
    if (role < 0) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    return role ? status : CMD_CONTINUE;
}
