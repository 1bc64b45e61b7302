/* fuzz_latency_wire: the profiler messages between MPI ranks (src/latency_wire.h). The input
 * is one message, decoded as a table (or the profiler's last word) and as an architecture for
 * the tiny run's search space. What decodes is encoded again, and the encoding is canonical:
 * it must give back the message's bytes exactly, and decode to the same fields; anything else
 * aborts: a bug. */
#include "fuzz_lib.h"

#include "common.h"
#include "job.h"
#include "latency_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The tiny run's supernet and the buffers, built on first use and kept (not a leak: they stay
 * reachable). */
static struct net *space;
static struct latency_table *table, *again;
static uint8_t *encoded;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_latency_wire: %s (%s)\n", what, offnas_last_error());
    abort();
}

static void build_space(void)
{
    struct job *job = malloc(sizeof *job);
    if (!job || job_load_text(job, FUZZ_TINY_JOB, fuzz_dir(), "tiny.ini"))
        abort();
    space = net_create(&job->net, 1, job->data_resize, 1, 10, 0, 1);
    table = malloc(sizeof *table);
    again = malloc(sizeof *again);
    encoded = malloc(LATENCY_WIRE_MAX);
    if (!space || !table || !again || !encoded)
        abort();
    free(job);
}

/* The encoding of what decoded must be the input's first n bytes. */
static void same_bytes(const uint8_t *data, size_t size, size_t n, const char *what)
{
    if (n > size || memcmp(encoded, data, n) != 0)
        fail(what);
}

static void as_table(const uint8_t *data, size_t size)
{
    int got = latency_wire_decode_table(table, data, size, space, "table message");
    if (fuzz_step("latency_wire_decode_table", got < 0 ? -1 : 0))
        return;
    if (got == 0) {
        same_bytes(data, size, latency_wire_encode_end(encoded, LATENCY_WIRE_MAX),
                   "the last word does not encode back to its bytes");
        return;
    }
    size_t n = latency_wire_encode_table(encoded, LATENCY_WIRE_MAX, table);
    same_bytes(data, size, n, "a table does not encode back to its bytes");
    memset(again, 0, sizeof *again);
    if (latency_wire_decode_table(again, encoded, n, space, "again") != 1 ||
        memcmp(again, table, sizeof *table) != 0)
        fail("table round trip");
}

static void as_arch(const uint8_t *data, size_t size)
{
    struct dist_arch a, b;
    if (fuzz_step("latency_wire_decode_arch",
                  latency_wire_decode_arch(&a, data, size, space, "architecture message")))
        return;
    size_t n = latency_wire_encode_arch(encoded, LATENCY_WIRE_ARCH_MAX, &a,
                                        latency_fingerprint(space, NULL, 0));
    same_bytes(data, size, n, "an architecture does not encode back to its bytes");
    if (latency_wire_decode_arch(&b, encoded, n, space, "again") || b.layers != a.layers ||
        b.split != a.split || memcmp(b.ops, a.ops, sizeof(int) * (size_t)a.layers) != 0)
        fail("architecture round trip");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    if (!space)
        build_space();
    as_table(data, size);
    as_arch(data, size);
    return 0;
}
