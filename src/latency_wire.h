/* latency_wire: the messages between profiler ranks and trainers (latency tables, the
 * profiler's last word, the architectures trainer 0 sends), encoded explicitly so that a
 * profiler rank on another CPU architecture or another build of offnas is read right or
 * refused, never read as garbage. No MPI here: mpi/lutcast.c moves the bytes.
 *
 *     uint8_t msg[LATENCY_WIRE_MAX];
 *     size_t n = latency_wire_encode_table(msg, sizeof msg, &table);     // profiler
 *     int got = latency_wire_decode_table(&t, msg, n, net, "table message from rank 3");
 *     // got 1: t is the table; 0: the profiler's last word; -1: refused, offnas_last_error()
 *
 * Every integer is little-endian of fixed width, every double an IEEE-754 binary64 written as
 * its 8 bytes little-endian, all byte by byte. A message is a 20-byte header (magic "OFPM",
 * format version, kind, total length, search-space fingerprint), a body, and the zlib CRC-32
 * of everything before it. The layout, field by field: docs/formats.md "Profiler messages".
 * A decoded table passes the checks of a profile file (latency_check_received).
 */
#ifndef OFFNAS_LATENCY_WIRE_H
#define OFFNAS_LATENCY_WIRE_H

#include "dist.h"
#include "latency.h"
#include "net.h"

#include <stddef.h>
#include <stdint.h>

#define LATENCY_WIRE_VERSION 1 /* the format this build writes and reads */
#define LATENCY_WIRE_HEADER 20 /* magic, version, kind, length, fingerprint */
#define LATENCY_WIRE_CRC 4     /* the CRC-32 after the body */

/* What a message carries: the header's kind field. */
enum latency_wire_kind {
    LATENCY_WIRE_TABLE = 1, /* a latency table */
    LATENCY_WIRE_END = 2,   /* the profiler's last word: no table follows (no body) */
    LATENCY_WIRE_ARCH = 3,  /* the architecture the trainers prefer (trainer 0 -> profiler) */
};

/* The longest table message: every string at its longest, every slot with every candidate. */
#define LATENCY_WIRE_TABLE_FIXED 26 /* threads, version, fit_mape, fit_rmse_ms, slot_count */
#define LATENCY_WIRE_STRINGS 6      /* device, host, cpu, date, source, space */
#define LATENCY_WIRE_ENTRY 28       /* median, p10, p90 (f64), repeats (i32) */
#define LATENCY_WIRE_PROBE 72       /* present, split, kept, 6 ms (f64), link_fitted, bandwidth, rtt */
#define LATENCY_WIRE_MAX                                                                        \
    (LATENCY_WIRE_HEADER + LATENCY_WIRE_TABLE_FIXED + 2 * LATENCY_MAX_SLOTS +                   \
     2 * LATENCY_WIRE_STRINGS + (64 + 128 + 128 + 32 + 256 + LATENCY_SPACE_MAX - 6) +          \
     LATENCY_WIRE_ENTRY * LATENCY_MAX_SLOTS * NET_MAX_CANDIDATES + LATENCY_WIRE_PROBE +          \
     LATENCY_WIRE_CRC)
/* The longest architecture message: 64 layers of ops. */
#define LATENCY_WIRE_ARCH_MAX (LATENCY_WIRE_HEADER + 4 + 2 * 64 + 2 + LATENCY_WIRE_CRC)

/* Encodes table t into buf (size bytes, at least LATENCY_WIRE_MAX is always enough) and
 * returns the message's length. t's counts must be within the struct (an assertion);
 * its values are not checked here: the receiver checks them. */
size_t latency_wire_encode_table(uint8_t *buf, size_t size, const struct latency_table *t);

/* Encodes the profiler's last word (fingerprint 0, no body); returns its length (24). */
size_t latency_wire_encode_end(uint8_t *buf, size_t size);

/* Encodes architecture a for the space with fingerprint (of the sender's net); returns the
 * length (at most LATENCY_WIRE_ARCH_MAX). a->layers must be 0 … 64 (an assertion). */
size_t latency_wire_encode_arch(uint8_t *buf, size_t size, const struct dist_arch *a,
                                uint64_t fingerprint);

/* Decodes the message in msg[0 … bytes): bytes after its length are ignored (a broadcast
 * carries LATENCY_WIRE_MAX bytes). Checks, in order: magic, version, kind (a table or the
 * end), length (within bytes: else "truncated: 812 of 1024 bytes"), CRC-32 (the last word:
 * fingerprint 0 and no body), that the fields fill the length exactly and every string fits its field, then latency_check_received
 * against net (fingerprint, space, shape, values). Messages start with from ("FROM: version
 * 2, this build reads 1"). Returns 1 with the table in t, 0 for the last word (t untouched),
 * or -1 with an error (t untouched). */
int latency_wire_decode_table(struct latency_table *t, const uint8_t *msg, size_t bytes,
                              const struct net *net, const char *from);

/* Decodes an architecture message for net's space into a: header and CRC as above, then
 * the fingerprint, layers (net's layer count), split (0 … L+1) and every op (a candidate of its
 * layer). Returns 0, or -1 with an error (a untouched). */
int latency_wire_decode_arch(struct dist_arch *a, const uint8_t *msg, size_t bytes,
                             const struct net *net, const char *from);

#endif
