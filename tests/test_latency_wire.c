/* Tests of latency_wire: the profiler messages (tables, the last word, architectures) round
 * trip bit for bit, are laid out little-endian whatever the host, and every damaged, foreign
 * or out-of-range message is refused with one line naming the field. */
#define _POSIX_C_SOURCE 200809L
#include "testing.h"
#include "tiny.h"

#include "common.h"
#include "latency.h"
#include "latency_wire.h"
#include "net.h"
#include "rng.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define FROM "table message from profiler rank 3 (mobile)"


static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Writes a fresh CRC over a message edited on purpose, so a check after the CRC's is reached:
 * the length field says where the CRC goes. */
static void reseal(uint8_t *msg)
{
    uint32_t length = get_le32(msg + 8);
    put_le32(msg + length - 4, (uint32_t)crc32(0L, msg, length - 4));
}

/* Expects decoding msg (bytes long) as a table for net to be refused with part in one line
 * that starts with FROM, and t to be left as it was. */
static void expect_table_refused(const uint8_t *msg, size_t bytes, const struct net *net,
                                 const char *part)
{
    struct latency_table *t = malloc(sizeof *t), *before = malloc(sizeof *before);
    memset(t, 0x5a, sizeof *t);
    memcpy(before, t, sizeof *t);
    EXPECT_EQ_INT(latency_wire_decode_table(t, msg, bytes, net, FROM), -1);
    EXPECT_CONTAINS(offnas_last_error(), FROM ": ");
    EXPECT_CONTAINS(offnas_last_error(), part);
    CU_ASSERT(strchr(offnas_last_error(), '\n') == NULL);
    CU_ASSERT(memcmp(t, before, sizeof *t) == 0);
    free(t);
    free(before);
}

/* Encodes t and expects the message refused against net with part. */
static void expect_encoded_refused(const struct latency_table *t, const struct net *net,
                                   const char *part)
{
    uint8_t *msg = calloc(1, LATENCY_WIRE_MAX);
    size_t n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, t);
    expect_table_refused(msg, n, net, part);
    free(msg);
}

TEST(table_message_round_trip_is_bit_exact)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table *t = calloc(1, sizeof *t), *back = calloc(1, sizeof *back);
    uint8_t *msg = calloc(1, LATENCY_WIRE_MAX);
    tiny_fill_table(t, net, 11, 20);
    for (int fit = 0; fit < 2; fit++) {
        t->fit_mape = fit ? 7.25 : -1.0;
        t->fit_rmse_ms = fit ? 0.0123456789 : -1.0;
        size_t n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, t);
        CU_ASSERT(n > LATENCY_WIRE_HEADER && n <= LATENCY_WIRE_MAX);
        memset(back, 0xab, sizeof *back);
        int got = latency_wire_decode_table(back, msg, n, net, FROM);
        if (got != 1)
            fprintf(stderr, "%s\n", offnas_last_error());
        EXPECT_EQ_INT(got, 1);
        /* every field, padding of the strings included: both start zeroed */
        CU_ASSERT(memcmp(back, t, sizeof *t) == 0);
        /* a broadcast carries LATENCY_WIRE_MAX bytes: what follows the message is ignored */
        memset(msg + n, 0xee, LATENCY_WIRE_MAX - n);
        EXPECT_EQ_INT(latency_wire_decode_table(back, msg, LATENCY_WIRE_MAX, net, FROM), 1);
        CU_ASSERT(memcmp(back, t, sizeof *t) == 0);
    }
    free(msg);
    free(t);
    free(back);
    net_free(net);
}

/* A table that carries a measured partition (the mobile profiler's, to the trainers) round
 * trips bit for bit; a probe with a split outside the inner splits, a negative or NaN time or
 * a fitted link of 0 Mbit/s is refused naming the field. */
TEST(table_message_carries_a_probe)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table *t = calloc(1, sizeof *t), *back = calloc(1, sizeof *back);
    uint8_t *msg = calloc(1, LATENCY_WIRE_MAX);
    tiny_fill_table(t, net, 11, 20);
    t->probe = (struct latency_probe){.present = 1, .split = 2, .kept = 3,
                                      .measured = {0.25, 10.5, 0.125},
                                      .predicted = {0.2, 10.25, 0},
                                      .link_fitted = 1, .bandwidth_mbps = 18.5, .rtt_ms = 9.75};
    size_t n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, t);
    memset(back, 0xab, sizeof *back);
    EXPECT_EQ_INT(latency_wire_decode_table(back, msg, n, net, FROM), 1);
    CU_ASSERT(memcmp(back, t, sizeof *t) == 0);
    struct latency_table bad = *t;
    bad.probe.split = net->layer_count + 1;
    n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, &bad);
    EXPECT_EQ_INT(latency_wire_decode_table(back, msg, n, net, FROM), -1);
    EXPECT_CONTAINS(offnas_last_error(), "probe.split");
    bad = *t;
    bad.probe.measured[1] = NAN;
    n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, &bad);
    EXPECT_EQ_INT(latency_wire_decode_table(back, msg, n, net, FROM), -1);
    EXPECT_CONTAINS(offnas_last_error(), "probe.measured_transfer_ms");
    bad = *t;
    bad.probe.bandwidth_mbps = 0;
    n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, &bad);
    EXPECT_EQ_INT(latency_wire_decode_table(back, msg, n, net, FROM), -1);
    EXPECT_CONTAINS(offnas_last_error(), "probe.bandwidth_mbps");
    free(msg);
    free(t);
    free(back);
    net_free(net);
}

TEST(table_message_is_little_endian_whatever_the_host)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table *t = calloc(1, sizeof *t);
    uint8_t *msg = calloc(1, LATENCY_WIRE_MAX);
    tiny_fill_table(t, net, 11, 20);
    size_t n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, t);
    CU_ASSERT(memcmp(msg, "OFPM", 4) == 0);
    EXPECT_EQ_INT(msg[4] | msg[5] << 8, LATENCY_WIRE_VERSION);
    EXPECT_EQ_INT(msg[6] | msg[7] << 8, LATENCY_WIRE_TABLE);
    EXPECT_EQ_INT(get_le32(msg + 8), n);
    uint64_t fp = (uint64_t)get_le32(msg + 12) | (uint64_t)get_le32(msg + 16) << 32;
    CU_ASSERT(fp == t->fingerprint);
    EXPECT_EQ_INT(get_le32(msg + 20), 3); /* threads */
    EXPECT_EQ_INT(get_le32(msg + 24), 7); /* version */
    /* fit_mape -1.0: IEEE binary64 0xbff0000000000000, low byte first */
    const uint8_t minus_one[8] = {0, 0, 0, 0, 0, 0, 0xf0, 0xbf};
    CU_ASSERT(memcmp(msg + 28, minus_one, 8) == 0);
    EXPECT_EQ_INT(msg[44] | msg[45] << 8, t->slot_count);
    EXPECT_EQ_INT(msg[46] | msg[47] << 8, 1);    /* the stem's one op */
    EXPECT_EQ_INT(get_le32(msg + n - 4), crc32(0L, msg, (uInt)(n - 4)));
    /* and the length is what the fields take, nothing more */
    size_t strings = strlen(t->device) + strlen(t->host) + strlen(t->cpu) + strlen(t->date) +
                     strlen(t->source) + strlen(t->space) + 2 * LATENCY_WIRE_STRINGS;
    size_t entries = 0;
    for (int s = 0; s < t->slot_count; s++)
        entries += (size_t)t->op_count[s];
    /* + 2: the probe flag (0: no probe section) */
    EXPECT_EQ_INT(n, LATENCY_WIRE_HEADER + LATENCY_WIRE_TABLE_FIXED + 2 * t->slot_count +
                         strings + LATENCY_WIRE_ENTRY * entries + 2 + LATENCY_WIRE_CRC);
    free(msg);
    free(t);
    net_free(net);
}

TEST(largest_table_fits_the_broadcast)
{
    /* every string at its longest and every slot with every candidate */
    struct latency_table *t = calloc(1, sizeof *t);
    memset(t->device, 'd', sizeof t->device - 1);
    memset(t->host, 'h', sizeof t->host - 1);
    memset(t->cpu, 'c', sizeof t->cpu - 1);
    memset(t->date, 'D', sizeof t->date - 1);
    memset(t->source, 's', sizeof t->source - 1);
    memset(t->space, 'S', sizeof t->space - 1);
    t->slot_count = LATENCY_MAX_SLOTS;
    for (int s = 0; s < t->slot_count; s++)
        t->op_count[s] = NET_MAX_CANDIDATES;
    t->probe.present = 1; /* and a probe section */
    uint8_t *msg = calloc(1, LATENCY_WIRE_MAX);
    EXPECT_EQ_INT(latency_wire_encode_table(msg, LATENCY_WIRE_MAX, t), LATENCY_WIRE_MAX);
    free(msg);
    free(t);
}

TEST(end_message_is_the_last_word)
{
    struct net *net = tiny_net(NULL, 1);
    uint8_t msg[64];
    size_t n = latency_wire_encode_end(msg, sizeof msg);
    EXPECT_EQ_INT(n, LATENCY_WIRE_HEADER + LATENCY_WIRE_CRC);
    struct latency_table *t = calloc(1, sizeof *t);
    t->version = 42;
    EXPECT_EQ_INT(latency_wire_decode_table(t, msg, n, net, FROM), 0);
    EXPECT_EQ_INT(t->version, 42);
    /* the last word carries no fingerprint and no body (the encoding is canonical) */
    msg[16] = 0xf6;
    uint32_t crc = (uint32_t)crc32(0L, msg, (uInt)(n - 4));
    put_le32(msg + n - 4, crc);
    EXPECT_EQ_INT(latency_wire_decode_table(t, msg, n, net, FROM), -1);
    EXPECT_CONTAINS(offnas_last_error(), FROM ": fingerprint: 000000f600000000 in the last word");
    msg[16] = 0;
    put_le32(msg + n - 4, (uint32_t)crc32(0L, msg, (uInt)(n - 4)));
    /* an architecture decoder does not take it */
    struct dist_arch a;
    EXPECT_EQ_INT(latency_wire_decode_arch(&a, msg, n, net, "architecture message"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "architecture message: kind 2, expected 3");
    free(t);
    net_free(net);
}

TEST(table_message_refuses_truncated)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table *t = calloc(1, sizeof *t);
    uint8_t *msg = calloc(1, LATENCY_WIRE_MAX);
    tiny_fill_table(t, net, 11, 20);
    size_t n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, t);
    char want[64];
    snprintf(want, sizeof want, "truncated: %zu of %zu bytes", n - 1, n);
    expect_table_refused(msg, n - 1, net, want);
    snprintf(want, sizeof want, "truncated: %zu of %zu bytes", n / 2, n);
    expect_table_refused(msg, n / 2, net, want);
    expect_table_refused(msg, 10, net, "truncated: 10 of at least 24 bytes");
    expect_table_refused(msg, 0, net, "truncated: 0 of at least 24 bytes");
    /* a length field shorter than the fields: the fields run past it */
    put_le32(msg + 8, 200);
    reseal(msg);
    expect_table_refused(msg, n, net, "runs past the message's length");
    /* longer than the fields (bytes after them counted in) */
    tiny_fill_table(t, net, 11, 20);
    n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, t);
    put_le32(msg + 8, (uint32_t)n + 8);
    reseal(msg);
    char longer[80];
    snprintf(longer, sizeof longer, "length: %zu bytes of fields, the length says %zu", n, n + 8);
    expect_table_refused(msg, n + 8, net, longer);
    /* a length beyond any message */
    put_le32(msg + 8, 1u << 30);
    expect_table_refused(msg, LATENCY_WIRE_MAX, net, "length: 1073741824 is not in 24..");
    free(msg);
    free(t);
    net_free(net);
}

TEST(table_message_refuses_another_version_or_magic_or_kind)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table *t = calloc(1, sizeof *t);
    uint8_t *msg = calloc(1, LATENCY_WIRE_MAX);
    tiny_fill_table(t, net, 11, 20);
    size_t n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, t);
    msg[4] = 2;
    expect_table_refused(msg, n, net, "version 2, this build reads 1");
    msg[4] = 0;
    msg[5] = 1; /* 00 01: a big-endian writer of version 1 */
    expect_table_refused(msg, n, net, "version 256, this build reads 1");
    msg[4] = 1;
    msg[5] = 0;
    msg[0] = 'X';
    expect_table_refused(msg, n, net, "not a profiler message (magic 58 46 50 4d");
    msg[0] = 'O';
    msg[6] = LATENCY_WIRE_ARCH;
    expect_table_refused(msg, n, net, "kind 3, expected 1 or 2");
    msg[6] = LATENCY_WIRE_TABLE;
    struct latency_table *back = calloc(1, sizeof *back);
    EXPECT_EQ_INT(latency_wire_decode_table(back, msg, n, net, FROM), 1);
    free(back);
    free(msg);
    free(t);
    net_free(net);
}

TEST(table_message_refuses_wrong_crc)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table *t = calloc(1, sizeof *t);
    uint8_t *msg = calloc(1, LATENCY_WIRE_MAX);
    tiny_fill_table(t, net, 11, 20);
    size_t n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, t);
    /* one bit anywhere after the header's checked fields: a value, a string, the CRC itself */
    const size_t where[] = {12, 20, 50, n / 2, n - 5, n - 1};
    for (size_t k = 0; k < OFFNAS_ARRAY_LEN(where); k++) {
        msg[where[k]] ^= 0x10;
        expect_table_refused(msg, n, net, "CRC-32");
        EXPECT_CONTAINS(offnas_last_error(), "damaged on the way");
        msg[where[k]] ^= 0x10;
    }
    free(msg);
    free(t);
    net_free(net);
}

TEST(table_message_refuses_wrong_fingerprint)
{
    struct net *net = tiny_net(NULL, 1), *other = tiny_net("net.candidates=k3e1, k5e3, skip", 1);
    struct latency_table *t = calloc(1, sizeof *t);
    tiny_fill_table(t, other, 11, 20);
    char want[96];
    snprintf(want, sizeof want, "made for another search space (fingerprint %016llx, this job "
                                "%016llx)",
             (unsigned long long)t->fingerprint,
             (unsigned long long)latency_fingerprint(net, NULL, 0));
    expect_encoded_refused(t, net, want);
    /* a table whose space text does not go with its fingerprint */
    tiny_fill_table(t, net, 11, 20);
    t->space[0] = 'X';
    expect_encoded_refused(t, net, "space: does not match its fingerprint");
    /* right fingerprint, another shape (as a damaged sender would write it) */
    tiny_fill_table(t, net, 11, 20);
    t->op_count[3] = 2;
    expect_encoded_refused(t, net, "op_count: 2 is not in 4..4");
    tiny_fill_table(t, net, 11, 20);
    t->slot_count = 4;
    expect_encoded_refused(t, net, "slot_count: 4 is not in 5..5");
    free(t);
    net_free(other);
    net_free(net);
}

TEST(table_message_refuses_out_of_range_values)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table *t = calloc(1, sizeof *t);
    tiny_fill_table(t, net, 11, 20);
    t->median[2][1] = NAN;
    expect_encoded_refused(t, net, "median_ms (slot 2, op 1): nan is not a number in [0,");
    tiny_fill_table(t, net, 11, 20);
    t->p90[4][0] = -0.5;
    expect_encoded_refused(t, net, "p90_ms (slot 4, op 0): -0.5 is not a number");
    tiny_fill_table(t, net, 11, 20);
    t->p10[1][0] = INFINITY;
    expect_encoded_refused(t, net, "p10_ms (slot 1, op 0): inf is not a number");
    tiny_fill_table(t, net, 11, 20);
    t->median[0][0] = 3.7e6; /* more than an hour */
    expect_encoded_refused(t, net, "median_ms (slot 0, op 0)");
    tiny_fill_table(t, net, 11, 20);
    t->repeats[3][3] = -2;
    expect_encoded_refused(t, net, "repeats (slot 3, op 3): -2 is negative");
    tiny_fill_table(t, net, 11, 20);
    t->threads = 0;
    expect_encoded_refused(t, net, "threads: 0 is not in 1..4096");
    tiny_fill_table(t, net, 11, 20);
    t->version = -1;
    expect_encoded_refused(t, net, "version: -1 is not in 0..");
    tiny_fill_table(t, net, 11, 20);
    t->fit_mape = 2e6;
    expect_encoded_refused(t, net, "fit_mape: 2e+06 is not a number in [0, 1e+06]");
    tiny_fill_table(t, net, 11, 20);
    t->fit_rmse_ms = NAN;
    expect_encoded_refused(t, net, "fit_rmse_ms: nan is not a number");
    free(t);
    net_free(net);
}

TEST(table_message_refuses_bad_counts_and_strings)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table *t = calloc(1, sizeof *t);
    uint8_t *msg = calloc(1, LATENCY_WIRE_MAX);
    tiny_fill_table(t, net, 11, 20);
    size_t n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, t);
    /* slot_count 35 would index past the arrays: refused before any entry is read */
    msg[44] = LATENCY_MAX_SLOTS + 1;
    reseal(msg);
    expect_table_refused(msg, n, net, "slot_count: 35 is not in 2..34");
    msg[44] = (uint8_t)t->slot_count;
    msg[46] = 0; /* the stem with no op */
    reseal(msg);
    expect_table_refused(msg, n, net, "op_count: 0 is not in 1..16");
    msg[46] = 1;
    /* the device string: 11 bytes "tiny-device"; a NUL inside, then a length past the end */
    size_t device = LATENCY_WIRE_HEADER + LATENCY_WIRE_TABLE_FIXED + 2 * (size_t)t->slot_count;
    EXPECT_EQ_INT(msg[device], 11);
    msg[device + 2 + 4] = 0;
    reseal(msg);
    expect_table_refused(msg, n, net, "device: holds a NUL byte");
    msg[device + 2 + 4] = '-';
    msg[device] = 0xff;
    msg[device + 1] = 0xff;
    reseal(msg);
    expect_table_refused(msg, n, net, "device: runs past the message's length");
    free(msg);

    /* a string longer than the field it goes into (written by hand: the encoder cannot) */
    tiny_fill_table(t, net, 11, 20);
    t->device[0] = 0;
    msg = calloc(1, LATENCY_WIRE_MAX);
    n = latency_wire_encode_table(msg, LATENCY_WIRE_MAX, t);
    uint8_t *longer = calloc(1, LATENCY_WIRE_MAX);
    memcpy(longer, msg, device);
    longer[device] = 64;
    memset(longer + device + 2, 'd', 64);
    memcpy(longer + device + 2 + 64, msg + device + 2, n - device - 2);
    put_le32(longer + 8, (uint32_t)n + 64);
    reseal(longer);
    expect_table_refused(longer, n + 64, net, "device: longer than 63 characters");
    free(longer);
    free(msg);
    free(t);
    net_free(net);
}

TEST(arch_message_round_trip)
{
    struct net *net = tiny_net(NULL, 1);
    struct dist_arch a = {.ops = {2, 0, 3}, .layers = 3, .split = 2, .kept = 5}, back;
    uint8_t msg[LATENCY_WIRE_ARCH_MAX];
    size_t n = latency_wire_encode_arch(msg, sizeof msg, &a, latency_fingerprint(net, NULL, 0));
    EXPECT_EQ_INT(n, LATENCY_WIRE_HEADER + 4 + 2 * 3 + 2 + LATENCY_WIRE_CRC);
    memset(&back, 0x77, sizeof back);
    EXPECT_EQ_INT(latency_wire_decode_arch(&back, msg, n, net, "architecture message"), 0);
    EXPECT_EQ_INT(back.layers, 3);
    EXPECT_EQ_INT(back.split, 2);
    EXPECT_EQ_INT(back.kept, 5);
    for (int l = 0; l < 3; l++)
        EXPECT_EQ_INT(back.ops[l], a.ops[l]);
    net_free(net);
}

/* Encodes a for net (fingerprint fp) and expects the decoder to refuse it with part. */
static void expect_arch_refused(const struct dist_arch *a, uint64_t fp, const struct net *net,
                                const char *part)
{
    uint8_t msg[LATENCY_WIRE_ARCH_MAX];
    size_t n = latency_wire_encode_arch(msg, sizeof msg, a, fp);
    struct dist_arch back = {.layers = -9};
    EXPECT_EQ_INT(latency_wire_decode_arch(&back, msg, n, net, "architecture message"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "architecture message: ");
    EXPECT_CONTAINS(offnas_last_error(), part);
    EXPECT_EQ_INT(back.layers, -9);
}

TEST(arch_message_refuses_damaged_foreign_and_out_of_range)
{
    struct net *net = tiny_net(NULL, 1);
    uint64_t fp = latency_fingerprint(net, NULL, 0);
    struct dist_arch a = {.ops = {2, 0, 3}, .layers = 3, .split = 4};
    expect_arch_refused(&a, fp ^ 1, net, "made for another search space");
    struct dist_arch b = a;
    b.layers = 2;
    expect_arch_refused(&b, fp, net, "layers: 2 is not in 3..3");
    b = a;
    b.split = 5;
    expect_arch_refused(&b, fp, net, "split: 5 is not in 0..4");
    b = a;
    b.ops[0] = 3; /* layer 1 has no skip */
    expect_arch_refused(&b, fp, net, "ops[0]: 3 is not in 0..2");
    b = a;
    b.layers = 4;
    b.ops[3] = 0;
    expect_arch_refused(&b, fp, net, "layers: 4 is not in 3..3");
    b = a;
    b.kept = 1; /* split 4 (all on the device) sends nothing */
    expect_arch_refused(&b, fp, net, "kept: 1 is not in 0..0");
    b = a;
    b.split = 1;
    b.kept = net_out_channels(net, 1) + 1;
    expect_arch_refused(&b, fp, net, "kept: ");

    uint8_t msg[LATENCY_WIRE_ARCH_MAX];
    size_t n = latency_wire_encode_arch(msg, sizeof msg, &a, fp);
    struct dist_arch back;
    EXPECT_EQ_INT(latency_wire_decode_arch(&back, msg, n - 1, net, "arch"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "arch: truncated: 35 of 36 bytes");
    msg[n - 6] ^= 1;
    EXPECT_EQ_INT(latency_wire_decode_arch(&back, msg, n, net, "arch"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "arch: CRC-32");
    msg[n - 6] ^= 1;
    msg[4] = 9;
    EXPECT_EQ_INT(latency_wire_decode_arch(&back, msg, n, net, "arch"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "arch: version 9, this build reads 1");
    msg[4] = 1;
    /* a table message is not an architecture */
    struct latency_table *t = calloc(1, sizeof *t);
    uint8_t *table = calloc(1, LATENCY_WIRE_MAX);
    tiny_fill_table(t, net, 11, 20);
    size_t tn = latency_wire_encode_table(table, LATENCY_WIRE_MAX, t);
    EXPECT_EQ_INT(latency_wire_decode_arch(&back, table, tn, net, "arch"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "arch: kind 1, expected 3");
    free(table);
    free(t);
    net_free(net);
}

static const struct test_case TESTS[] = {
    CASE(table_message_round_trip_is_bit_exact),
    CASE(table_message_carries_a_probe),
    CASE(table_message_is_little_endian_whatever_the_host),
    CASE(largest_table_fits_the_broadcast),
    CASE(end_message_is_the_last_word),
    CASE(table_message_refuses_truncated),
    CASE(table_message_refuses_another_version_or_magic_or_kind),
    CASE(table_message_refuses_wrong_crc),
    CASE(table_message_refuses_wrong_fingerprint),
    CASE(table_message_refuses_out_of_range_values),
    CASE(table_message_refuses_bad_counts_and_strings),
    CASE(arch_message_round_trip),
    CASE(arch_message_refuses_damaged_foreign_and_out_of_range),
};
TEST_MAIN("latency_wire", TESTS)
