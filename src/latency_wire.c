/* latency_wire: explicit encoding of the profiler messages; see latency_wire.h. */
#define _POSIX_C_SOURCE 200809L
#include "latency_wire.h"

#include "check.h"
#include "common.h"

#include <math.h>
#include <string.h>
#include <zlib.h>

static const uint8_t MAGIC[4] = {'O', 'F', 'P', 'M'};

/* ---- bytes ------------------------------------------------------------------------------ */

/* A cursor over a message being written or read; end is where the body stops (the CRC). */
struct cursor {
    uint8_t *out;      /* writing */
    const uint8_t *in; /* reading */
    size_t pos, end;
    const char *from;  /* reading: the message's name in errors */
    int failed;        /* reading: a field ran past end (reported once) */
};

static void put_bytes(struct cursor *c, const void *src, size_t n)
{
    OFFNAS_ASSERT(c->pos + n <= c->end);
    memcpy(c->out + c->pos, src, n);
    c->pos += n;
}

static void put_le(struct cursor *c, uint64_t v, int bytes)
{
    OFFNAS_ASSERT(c->pos + (size_t)bytes <= c->end);
    for (int i = 0; i < bytes; i++)
        c->out[c->pos++] = (uint8_t)(v >> (8 * i));
}

static void put_f64(struct cursor *c, double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    put_le(c, bits, 8);
}

/* A string field: u16 length, then its bytes (no NUL). */
static void put_string(struct cursor *c, const char *s, size_t field_size)
{
    size_t n = strnlen(s, field_size);
    OFFNAS_ASSERT(n < field_size && n <= UINT16_MAX);
    put_le(c, n, 2);
    put_bytes(c, s, n);
}

/* 1 when n more bytes are there to read; else reports the field (once) and returns 0. */
static int have(struct cursor *c, size_t n, const char *field)
{
    if (c->failed)
        return 0;
    if (c->pos + n > c->end) {
        offnas_error("%s: %s: runs past the message's length (%zu bytes of fields)", c->from,
                     field, c->end);
        c->failed = 1;
        return 0;
    }
    return 1;
}

static uint64_t get_le(struct cursor *c, int bytes, const char *field)
{
    if (!have(c, (size_t)bytes, field))
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)c->in[c->pos++] << (8 * i);
    return v;
}

static int32_t get_i32(struct cursor *c, const char *field)
{
    uint32_t u = (uint32_t)get_le(c, 4, field);
    int32_t v;
    memcpy(&v, &u, sizeof v); /* two's complement on every platform offnas builds for */
    return v;
}

static double get_f64(struct cursor *c, const char *field)
{
    uint64_t bits = get_le(c, 8, field);
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static void put_header(uint8_t *buf, enum latency_wire_kind kind, uint32_t length,
                       uint64_t fingerprint)
{
    struct cursor c = {.out = buf, .end = LATENCY_WIRE_HEADER};
    put_bytes(&c, MAGIC, sizeof MAGIC);
    put_le(&c, LATENCY_WIRE_VERSION, 2);
    put_le(&c, kind, 2);
    put_le(&c, length, 4);
    put_le(&c, fingerprint, 8);
}

/* Ends a message of length bytes in buf with the CRC-32 of everything before it. */
static size_t put_crc(uint8_t *buf, size_t length)
{
    uint32_t crc = (uint32_t)crc32(0L, buf, (uInt)(length - LATENCY_WIRE_CRC));
    struct cursor c = {.out = buf, .pos = length - LATENCY_WIRE_CRC, .end = length};
    put_le(&c, crc, 4);
    return length;
}

/* ---- encoding --------------------------------------------------------------------------- */

/* The fields of t in the order of docs/formats.md. */
static void put_table_body(struct cursor *c, const struct latency_table *t)
{
    put_le(c, (uint32_t)t->threads, 4);
    put_le(c, (uint32_t)t->version, 4);
    put_f64(c, t->fit_mape);
    put_f64(c, t->fit_rmse_ms);
    put_le(c, (uint64_t)t->slot_count, 2);
    for (int s = 0; s < t->slot_count; s++)
        put_le(c, (uint64_t)t->op_count[s], 2);
    put_string(c, t->device, sizeof t->device);
    put_string(c, t->host, sizeof t->host);
    put_string(c, t->cpu, sizeof t->cpu);
    put_string(c, t->date, sizeof t->date);
    put_string(c, t->source, sizeof t->source);
    put_string(c, t->space, sizeof t->space);
    for (int s = 0; s < t->slot_count; s++)
        for (int i = 0; i < t->op_count[s]; i++) {
            put_f64(c, t->median[s][i]);
            put_f64(c, t->p10[s][i]);
            put_f64(c, t->p90[s][i]);
            put_le(c, (uint32_t)t->repeats[s][i], 4);
        }
    const struct latency_probe *pr = &t->probe;
    put_le(c, pr->present ? 1 : 0, 2);
    if (!pr->present)
        return;
    put_le(c, (uint64_t)pr->split, 2);
    put_le(c, (uint64_t)pr->kept, 2);
    for (int k = 0; k < 3; k++)
        put_f64(c, pr->measured[k]);
    for (int k = 0; k < 3; k++)
        put_f64(c, pr->predicted[k]);
    put_le(c, pr->link_fitted ? 1 : 0, 2);
    put_f64(c, pr->bandwidth_mbps);
    put_f64(c, pr->rtt_ms);
}

size_t latency_wire_encode_table(uint8_t *buf, size_t size, const struct latency_table *t)
{
    OFFNAS_ASSERT(t->slot_count >= 0 && t->slot_count <= LATENCY_MAX_SLOTS);
    for (int s = 0; s < t->slot_count; s++)
        OFFNAS_ASSERT(t->op_count[s] >= 0 && t->op_count[s] <= NET_MAX_CANDIDATES);
    OFFNAS_ASSERT(size >= LATENCY_WIRE_HEADER + LATENCY_WIRE_CRC);
    struct cursor c = {.out = buf, .pos = LATENCY_WIRE_HEADER, .end = size - LATENCY_WIRE_CRC};
    put_table_body(&c, t);
    size_t length = c.pos + LATENCY_WIRE_CRC;
    put_header(buf, LATENCY_WIRE_TABLE, (uint32_t)length, t->fingerprint);
    return put_crc(buf, length);
}

size_t latency_wire_encode_end(uint8_t *buf, size_t size)
{
    size_t length = LATENCY_WIRE_HEADER + LATENCY_WIRE_CRC;
    OFFNAS_ASSERT(size >= length);
    put_header(buf, LATENCY_WIRE_END, (uint32_t)length, 0);
    return put_crc(buf, length);
}

size_t latency_wire_encode_arch(uint8_t *buf, size_t size, const struct dist_arch *a,
                                uint64_t fingerprint)
{
    OFFNAS_ASSERT(a->layers >= 0 && a->layers <= (int)OFFNAS_ARRAY_LEN(a->ops));
    OFFNAS_ASSERT(size >= LATENCY_WIRE_HEADER + LATENCY_WIRE_CRC);
    struct cursor c = {.out = buf, .pos = LATENCY_WIRE_HEADER, .end = size - LATENCY_WIRE_CRC};
    put_le(&c, (uint64_t)a->layers, 2);
    put_le(&c, (uint64_t)a->split, 2);
    for (int l = 0; l < a->layers; l++)
        put_le(&c, (uint64_t)a->ops[l], 2);
    put_le(&c, (uint64_t)a->kept, 2);
    size_t length = c.pos + LATENCY_WIRE_CRC;
    put_header(buf, LATENCY_WIRE_ARCH, (uint32_t)length, fingerprint);
    return put_crc(buf, length);
}

/* ---- decoding --------------------------------------------------------------------------- */

/* The checks every message passes before its body is read: magic, version, kind (one of
 * want_a, want_b), length within bytes, CRC. On success c reads the body and *kind,
 * *fingerprint are the header's. */
static int open_message(struct cursor *c, const uint8_t *msg, size_t bytes, const char *from,
                        enum latency_wire_kind want_a, enum latency_wire_kind want_b,
                        enum latency_wire_kind *kind, uint64_t *fingerprint)
{
    const size_t least = LATENCY_WIRE_HEADER + LATENCY_WIRE_CRC;
    if (bytes < least)
        return offnas_error("%s: truncated: %zu of at least %zu bytes", from, bytes, least);
    if (memcmp(msg, MAGIC, sizeof MAGIC))
        return offnas_error("%s: not a profiler message (magic %02x %02x %02x %02x, want "
                            "'OFPM')",
                            from, msg[0], msg[1], msg[2], msg[3]);
    *c = (struct cursor){.in = msg, .pos = sizeof MAGIC, .end = LATENCY_WIRE_HEADER,
                         .from = from};
    unsigned version = (unsigned)get_le(c, 2, "version");
    if (version != LATENCY_WIRE_VERSION)
        return offnas_error("%s: version %u, this build reads %d (another build of offnas?)",
                            from, version, LATENCY_WIRE_VERSION);
    unsigned k = (unsigned)get_le(c, 2, "kind");
    if (k != want_a && k != want_b && want_a == want_b)
        return offnas_error("%s: kind %u, expected %d", from, k, (int)want_a);
    if (k != want_a && k != want_b)
        return offnas_error("%s: kind %u, expected %d or %d", from, k, (int)want_a,
                            (int)want_b);
    *kind = (enum latency_wire_kind)k;
    uint64_t length = get_le(c, 4, "length");
    *fingerprint = get_le(c, 8, "fingerprint");
    if (length < least || length > LATENCY_WIRE_MAX)
        return offnas_error("%s: length: %llu is not in %zu..%d", from,
                            (unsigned long long)length, least, LATENCY_WIRE_MAX);
    if (length > bytes)
        return offnas_error("%s: truncated: %zu of %llu bytes", from, bytes,
                            (unsigned long long)length);
    c->end = (size_t)length - LATENCY_WIRE_CRC;
    c->pos = LATENCY_WIRE_HEADER;
    uint32_t crc = (uint32_t)crc32(0L, msg, (uInt)c->end);
    struct cursor tail = {.in = msg, .pos = c->end, .end = (size_t)length, .from = from};
    uint32_t sent = (uint32_t)get_le(&tail, 4, "crc");
    if (crc != sent)
        return offnas_error("%s: CRC-32 %08x, the bytes give %08x (damaged on the way)", from,
                            sent, crc);
    return 0;
}

/* Refuses a body whose fields end before its length says. */
static int check_filled(const struct cursor *c)
{
    if (c->failed)
        return -1;
    if (c->pos != c->end)
        return offnas_error("%s: length: %zu bytes of fields, the length says %zu", c->from,
                            c->pos + LATENCY_WIRE_CRC, c->end + LATENCY_WIRE_CRC);
    return 0;
}

/* A count field of u16 into *out, refused unless in lo..hi (as a profile's attributes are). */
static int get_count(struct cursor *c, const char *field, int lo, int hi, int *out)
{
    uint64_t v = get_le(c, 2, field);
    if (c->failed)
        return -1;
    return check_int64(c->from, field, (int64_t)v, lo, hi, out);
}

/* A string field into out (field_size bytes): it must fit, as a profile's attributes must, and
 * hold no NUL byte. */
static int get_string(struct cursor *c, const char *field, char *out, size_t field_size)
{
    size_t n = (size_t)get_le(c, 2, field);
    if (!have(c, n, field))
        return -1;
    const char *s = (const char *)c->in + c->pos;
    if (memchr(s, 0, n))
        return offnas_error("%s: %s: holds a NUL byte", c->from, field);
    char *text = offnas_malloc(n + 1);
    memcpy(text, s, n);
    text[n] = 0;
    int rc = check_string(c->from, field, text, field_size);
    if (!rc)
        memcpy(out, text, n + 1);
    free(text);
    c->pos += n;
    return rc;
}

/* A finite, non-negative milliseconds (or rate) field. */
static int get_ms(struct cursor *c, const char *field, double *out)
{
    *out = get_f64(c, field);
    if (!c->failed && !(isfinite(*out) && *out >= 0))
        return offnas_error("%s: probe.%s: %g is not a finite number >= 0", c->from, field, *out);
    return c->failed ? -1 : 0;
}

/* The optional probe section after a table's entries (layers: L of the space). */
static int get_probe(struct cursor *c, struct latency_probe *p, int layers)
{
    memset(p, 0, sizeof *p);
    int present;
    OFFNAS_TRY(get_count(c, "probe", 0, 1, &present));
    if (!present)
        return 0;
    p->present = 1;
    OFFNAS_TRY(get_count(c, "probe.split", 1, layers, &p->split));
    OFFNAS_TRY(get_count(c, "probe.kept", 1, NET_MAX_CHANNELS, &p->kept));
    static const char *const MEASURED[3] = {"measured_device_ms", "measured_transfer_ms",
                                            "measured_edge_ms"};
    static const char *const PREDICTED[3] = {"predicted_device_ms", "predicted_transfer_ms",
                                             "predicted_edge_ms"};
    for (int k = 0; k < 3; k++)
        OFFNAS_TRY(get_ms(c, MEASURED[k], &p->measured[k]));
    for (int k = 0; k < 3; k++)
        OFFNAS_TRY(get_ms(c, PREDICTED[k], &p->predicted[k]));
    OFFNAS_TRY(get_count(c, "probe.link_fitted", 0, 1, &p->link_fitted));
    OFFNAS_TRY(get_ms(c, "bandwidth_mbps", &p->bandwidth_mbps));
    OFFNAS_TRY(get_ms(c, "rtt_ms", &p->rtt_ms));
    if (p->link_fitted && !(p->bandwidth_mbps > 0))
        return offnas_error("%s: probe.bandwidth_mbps: a fitted link of 0 Mbit/s", c->from);
    return 0;
}

/* The body of a table message into t (zeroed first); the values are checked afterwards. */
static int get_table_body(struct cursor *c, struct latency_table *t)
{
    memset(t, 0, sizeof *t);
    t->threads = get_i32(c, "threads");
    t->version = get_i32(c, "version");
    t->fit_mape = get_f64(c, "fit_mape");
    t->fit_rmse_ms = get_f64(c, "fit_rmse_ms");
    OFFNAS_TRY(get_count(c, "slot_count", 2, LATENCY_MAX_SLOTS, &t->slot_count));
    for (int s = 0; s < t->slot_count; s++)
        OFFNAS_TRY(get_count(c, "op_count", 1, NET_MAX_CANDIDATES, &t->op_count[s]));
    OFFNAS_TRY(get_string(c, "device", t->device, sizeof t->device));
    OFFNAS_TRY(get_string(c, "host", t->host, sizeof t->host));
    OFFNAS_TRY(get_string(c, "cpu", t->cpu, sizeof t->cpu));
    OFFNAS_TRY(get_string(c, "date", t->date, sizeof t->date));
    OFFNAS_TRY(get_string(c, "source", t->source, sizeof t->source));
    OFFNAS_TRY(get_string(c, "space", t->space, sizeof t->space));
    for (int s = 0; s < t->slot_count && !c->failed; s++)
        for (int i = 0; i < t->op_count[s]; i++) {
            t->median[s][i] = get_f64(c, "median_ms");
            t->p10[s][i] = get_f64(c, "p10_ms");
            t->p90[s][i] = get_f64(c, "p90_ms");
            t->repeats[s][i] = get_i32(c, "repeats");
        }
    return get_probe(c, &t->probe, t->slot_count - 2) || check_filled(c) ? -1 : 0;
}

int latency_wire_decode_table(struct latency_table *t, const uint8_t *msg, size_t bytes,
                              const struct net *net, const char *from)
{
    struct cursor c;
    enum latency_wire_kind kind;
    uint64_t fingerprint;
    OFFNAS_TRY(open_message(&c, msg, bytes, from, LATENCY_WIRE_TABLE, LATENCY_WIRE_END, &kind,
                            &fingerprint));
    if (kind == LATENCY_WIRE_END && fingerprint != 0)
        return offnas_error("%s: fingerprint: %016llx in the last word, which carries none", from,
                            (unsigned long long)fingerprint);
    if (kind == LATENCY_WIRE_END)
        return check_filled(&c) ? -1 : 0;
    /* another space is named as such before its body could be refused for its shape */
    OFFNAS_TRY(latency_check_fingerprint(from, fingerprint, net));
    struct latency_table *got = offnas_malloc(sizeof *got);
    int rc = get_table_body(&c, got);
    got->fingerprint = fingerprint;
    if (!rc)
        rc = latency_check_received(got, net, from);
    if (!rc)
        memcpy(t, got, sizeof *t);
    free(got);
    return rc ? -1 : 1;
}

int latency_wire_decode_arch(struct dist_arch *a, const uint8_t *msg, size_t bytes,
                             const struct net *net, const char *from)
{
    struct cursor c;
    enum latency_wire_kind kind;
    uint64_t fingerprint;
    OFFNAS_TRY(open_message(&c, msg, bytes, from, LATENCY_WIRE_ARCH, LATENCY_WIRE_ARCH, &kind,
                            &fingerprint));
    OFFNAS_TRY(latency_check_fingerprint(from, fingerprint, net));
    struct dist_arch got = {.layers = 0};
    int L = net->layer_count;
    OFFNAS_TRY(get_count(&c, "layers", L, L, &got.layers));
    OFFNAS_TRY(get_count(&c, "split", 0, L + 1, &got.split));
    for (int l = 0; l < L; l++) {
        char field[32];
        snprintf(field, sizeof field, "ops[%d]", l);
        OFFNAS_TRY(get_count(&c, field, 0, net->layers[l].candidate_count - 1, &got.ops[l]));
    }
    int inner = got.split >= 1 && got.split <= L;
    OFFNAS_TRY(get_count(&c, "kept", 0, inner ? net_out_channels(net, got.split) : 0, &got.kept));
    OFFNAS_TRY(check_filled(&c));
    *a = got;
    return 0;
}
