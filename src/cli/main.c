/* main: the offnas program: dispatches to the commands and holds the option parsing they
 * share. */
#define _GNU_SOURCE
#include "cmd.h"
#include "common.h"
#if OFFNAS_WITH_MPI
#include "mpi_dist.h"
#endif

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char USAGE[] =
    "usage: offnas <command> [options]\n"
    "\n"
    "Searches a neural network and its split between a mobile device and an edge server.\n"
    "\n"
    "commands:\n"
    "  data import fashion-mnist [--from DIR] --out FILE.h5   import a data set into HDF5\n"
    "  data info FILE.h5                                      describe a data file\n"
    "  train --job FILE --out DIR [--set K=V ...]             train the fixed network\n"
    "  search --job FILE --out DIR                            search ops, split and channels\n"
    "  derive --run DIR                                       fix the choices: DIR/arch.json\n"
    "  train --arch DIR/arch.json --out DIR2                  retrain the derived network\n"
    "  eval --run DIR2 [--network NAME]                       accuracy and latency breakdown\n"
    "  baseline neurosurgeon|nas-then-split|prune-split --job FILE --out DIR\n"
    "                                                         a baseline of the claim\n"
    "  job --job FILE [--set K=V ...] [--key SECTION.KEY]     print the effective job\n"
    "  report --out R DIR...                                  runs side by side: table, plot\n"
    "  bench train --job FILE [--threads N] [--batch B]       time training steps\n"
    "  bench infer --job FILE [--threads N]                   time a batch-1 forward\n"
    "  profile --job FILE --device NAME --out FILE.h5         measure a latency table here\n"
    "  profile fit --csv FILE --job FILE --device NAME --out F fit one to published data\n"
    "  profiler --job FILE --device mobile|edge               a profiler rank (MPMD, mpirun)\n"
    "  bench search --job FILE [--steps N]                    time search steps (mpirun)\n"
    "  search --resume --out DIR                              continue from a checkpoint\n"
    "  edge-serve --run DIR2 [--listen ADDR:PORT]             serve the edge half over TCP\n"
    "  device-run --run DIR2 --server HOST:PORT               run the device half, measure\n"
    "\n"
    "Every command takes --help. Job keys: docs/jobs.md.\n";

/* Two runtime settings must be in the environment before the libraries load, so unless the
 * user chose them the program sets them and starts itself once more:
 * - OpenBLAS picks its kernels at load time; on virtual machines that report a generic CPU
 *   model it falls back to its Prescott (SSE3) kernels, 1.7x slower here than its SkylakeX
 *   ones. The core is named from the CPU's own feature flags.
 * - OpenMP threads spin after each parallel region by default and then fight OpenBLAS's own
 *   threads for the cores: 2 threads ran at 230 images/s against 600 with a passive wait. */
static void set_runtime_environment(char **argv)
{
    if (getenv("OFFNAS_ENV_SET"))
        return;
    setenv("OFFNAS_ENV_SET", "1", 1);
    int changed = 0;
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        changed = 1;
    }
    const char *core = NULL;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        core = "Haswell";
#endif
    if (core && !getenv("OPENBLAS_CORETYPE")) {
        setenv("OPENBLAS_CORETYPE", core, 1);
        changed = 1;
    }
    if (changed)
        execv("/proc/self/exe", argv); /* returns only on failure: carry on as we are */
}

static int run_command(int argc, char **argv);

int main(int argc, char **argv)
{
    set_runtime_environment(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
#if OFFNAS_WITH_MPI
    /* under mpirun or srun every rank is part of one job (roles: mpi/mpi_dist.h) */
    if (mpi_dist_launched()) {
        if (mpi_dist_start(&argc, &argv)) {
            fprintf(stderr, "offnas: %s\n", offnas_last_error());
            return 1;
        }
        int status = run_command(argc, argv);
        mpi_dist_end(status);
        return status;
    }
#endif
    return run_command(argc, argv);
}

static int run_command(int argc, char **argv)
{
    const char *name = argv[1];
    if (!strcmp(name, "data"))
        return cmd_data(argc - 1, argv + 1);
    if (!strcmp(name, "train"))
        return cmd_train(argc - 1, argv + 1);
    if (!strcmp(name, "search"))
        return cmd_search(argc - 1, argv + 1);
    if (!strcmp(name, "derive"))
        return cmd_derive(argc - 1, argv + 1);
    if (!strcmp(name, "eval"))
        return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(name, "report"))
        return cmd_report(argc - 1, argv + 1);
    if (!strcmp(name, "bench"))
        return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(name, "profile"))
        return cmd_profile(argc - 1, argv + 1);
    if (!strcmp(name, "profiler"))
        return cmd_profiler(argc - 1, argv + 1);
    if (!strcmp(name, "baseline"))
        return cmd_baseline(argc - 1, argv + 1);
    if (!strcmp(name, "job"))
        return cmd_job(argc - 1, argv + 1);
    if (!strcmp(name, "edge-serve"))
        return cmd_edge_serve(argc - 1, argv + 1);
    if (!strcmp(name, "device-run"))
        return cmd_device_run(argc - 1, argv + 1);
    return cmd_usage_error("unknown command '%s'", name);
}
