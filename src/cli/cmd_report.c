/* cmd_report: `offnas report`: runs side by side, as a table, a Pareto CSV, JSON and a plot. */
#include "cmd.h"
#include "common.h"
#include "report.h"

#include <stdlib.h>
#include <string.h>

static const char REPORT_USAGE[] =
    "usage: offnas report --out R DIR...\n"
    "\n"
    "Puts runs side by side. Each DIR is a run folder with a summary.json (offnas eval, or a\n"
    "baseline); a neurosurgeon run also gives the all-device and all-edge rows. Writes\n"
    "R/report.md (the table), R/pareto.csv, R/report.json and R/pareto.gp, and when gnuplot is\n"
    "installed runs it for R/pareto.png and R/pareto.svg (test accuracy against predicted\n"
    "end-to-end latency). Marks the Pareto-optimal rows and names the fastest run within 0.5\n"
    "points of the most accurate. Prints the table. docs/report.md describes every file.\n";

int cmd_report(int argc, char **argv)
{
    const char *out = NULL;
    const char **dirs = offnas_calloc((size_t)argc, sizeof *dirs);
    int count = 0, status = CMD_CONTINUE;
    for (int i = 1; i < argc && status == CMD_CONTINUE; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(REPORT_USAGE, stdout);
            status = 0;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] == '-') {
            status = cmd_usage_error("report: unknown or incomplete option '%s'", argv[i]);
        } else {
            dirs[count++] = argv[i];
        }
    }
    if (status == CMD_CONTINUE && !out)
        status = cmd_usage_error("report: --out R is required");
    if (status == CMD_CONTINUE && count == 0)
        status = cmd_usage_error("report: no run folders (DIR...) given");
    if (status != CMD_CONTINUE) {
        free(dirs);
        return status;
    }
    struct report rep;
    char gnuplot[JOB_PATH_MAX * 2];
    int have_gnuplot = report_find_gnuplot(gnuplot, sizeof gnuplot) == 0;
    char why_not[256];
    snprintf(why_not, sizeof why_not, "%s", have_gnuplot ? "" : offnas_last_error());
    int rc = report_read(&rep, dirs, count) || report_write(&rep, out, have_gnuplot);
    if (!rc) {
        report_write_md(&rep, have_gnuplot, stdout);
        printf("report: %s/report.md, %s/pareto.csv, %s/report.json, %s/pareto.gp\n", out, out,
               out, out);
        if (!have_gnuplot)
            printf("plot skipped: %s; the script is %s/pareto.gp\n", why_not, out);
        else if (fflush(stdout), !(rc = report_plot(out, gnuplot)))
            printf("plot: %s/pareto.png, %s/pareto.svg\n", out, out);
    }
    if (rc)
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
    report_free(&rep);
    free(dirs);
    return rc ? 1 : 0;
}
