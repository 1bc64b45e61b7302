/* cmd: the commands of the offnas program. Each takes the arguments after its name (argv[0] is
 * the command name), prints its own --help, and returns the process exit status: 0 success,
 * 1 failure (one line "offnas: ..." on stderr), 2 usage error. */
#ifndef OFFNAS_CMD_H
#define OFFNAS_CMD_H

#include "job.h"

int cmd_data(int argc, char **argv);  /* offnas data import fashion-mnist ... */
int cmd_train(int argc, char **argv); /* offnas train --job J --out DIR */
int cmd_bench(int argc, char **argv); /* offnas bench train ... */
int cmd_search(int argc, char **argv); /* offnas search --job J --out DIR */
int cmd_derive(int argc, char **argv); /* offnas derive --run DIR */
int cmd_eval(int argc, char **argv);   /* offnas eval --run DIR [--network NAME] */
int cmd_report(int argc, char **argv);  /* offnas report --out R DIR... */
int cmd_profile(int argc, char **argv); /* offnas profile [fit] ... */
int cmd_profiler(int argc, char **argv); /* offnas profiler --device NAME (an MPI rank) */
int cmd_baseline(int argc, char **argv); /* offnas baseline METHOD --job J --out DIR */
int cmd_job(int argc, char **argv);      /* offnas job --job J [--key SECTION.KEY] */
int cmd_edge_serve(int argc, char **argv); /* offnas edge-serve --run DIR [--listen A:P] */
int cmd_device_run(int argc, char **argv); /* offnas device-run --run DIR --server H:P */

/* Options every job-driven command accepts: --job FILE and any number of --set KEY=VALUE. */
struct cmd_job_options {
    const char *job_path; /* NULL: defaults only */
    const char *sets[64];
    int set_count;
};

/* If argv[*i] is --job or --set (with its value), consumes it into o, advances *i and returns
 * 1; returns 0 for other arguments and -1 (after printing a usage error) for a missing value. */
int cmd_take_job_option(struct cmd_job_options *o, int argc, char **argv, int *i);

/* Builds the job: defaults, the file, the --set overrides, job_finalize. Returns 0, or prints
 * "offnas: <error>" and returns -1. */
int cmd_load_job(struct job *job, const struct cmd_job_options *o);

/* offnas train --arch FILE: retrains a derived network with its split and channel mask. */
int cmd_train_arch(const char *arch_path, const char *out, const struct cmd_job_options *opts);

/* One option of a command: --name VALUE stored as a string (CMD_NEEDED: one the command cannot
 * run without), or as an int count checked against [min, max]. */
enum cmd_option_kind { CMD_STRING, CMD_NEEDED, CMD_COUNT, CMD_FLAG };
struct cmd_option {
    const char *name;          /* "--out" */
    enum cmd_option_kind kind;
    void *target;              /* const char ** for CMD_STRING, int * for CMD_COUNT and
                                * CMD_FLAG (a flag takes no value: set to 1) */
    long min, max;             /* CMD_COUNT only */
};

/* Parses argv[1..] of command (e.g. "bench train"): --help/-h prints usage to stdout, --job and
 * --set go to job (when job is non-NULL), the rest must be in options, and every CMD_NEEDED
 * option must be given. Returns CMD_CONTINUE when the command should run, or the exit status
 * (0 after --help, 2 after a usage error, printed as one line naming the command and the
 * option). */
#define CMD_CONTINUE (-1)
int cmd_parse(int argc, char **argv, const char *command, const char *usage,
              struct cmd_job_options *job, const struct cmd_option *options, int count);

/* cmd_parse with --job and --set, then cmd_load_job into job: CMD_CONTINUE when the command
 * should run, else the exit status (1 after a job error, printed). */
int cmd_parse_job(struct job *job, int argc, char **argv, const char *command, const char *usage,
                  const struct cmd_option *options, int count);

/* Joins the job's MPI ranks (dist_setup; uses_tables: the command takes tables from profiler
 * ranks). Returns CMD_CONTINUE on a trainer, else the exit status to return: a profiler
 * rank's when it has served, or 1 after printing the error. */
int cmd_join_ranks(const struct job *job, const char *profiler_device, int uses_tables);

/* Prints "offnas: <msg>" for a usage error and returns 2. */
int cmd_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
