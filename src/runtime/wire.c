/* wire: frames of the split runtime's protocol; see wire.h and docs/formats.md. */
#include "wire.h"

#include "common.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

_Static_assert(WIRE_FORMAT_COUNT == 5, "wire_format_names and wire_format_sizes need an entry");
_Static_assert(WIRE_E_COUNT == 13, "wire_error_names needs an entry per code");

static const char *const wire_format_names[WIRE_FORMAT_COUNT] = {"?", "u8", "fp32", "fp16", "int8"};
static const int wire_format_sizes[WIRE_FORMAT_COUNT] = {0, 1, 4, 2, 1};
static const char *const wire_type_names[WIRE_TYPE_COUNT] = {"?", "hello", "tensor", "result",
                                                             "error"};
static const char *const wire_error_names[WIRE_E_COUNT] = {
    "ok",    "magic",    "version", "type",    "too_large", "crc",     "truncated",
    "field", "mismatch", "state",   "timeout", "busy",      "internal"};

/* fixed parts of the payloads, in bytes (docs/formats.md) */
#define HELLO_FIXED 18  /* role 1, fingerprint 8, split 2, total 2, kept 2, format 1, length 2 */
#define TENSOR_FIXED 25 /* id 8, format 1, scale 4, zero 4, h 2, w 2, c 2, total 2 */
#define RESULT_FIXED 14 /* id 8, edge_us 4, classes 2 */
#define ERROR_FIXED 12  /* code 2, id 8, length 2 */

/* ---- little-endian bytes ---- */

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static void put_f32(uint8_t *p, float x) { put_le32(p, f32_bits(x)); }

static uint16_t get_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | ((uint64_t)get_le32(p + 4) << 32);
}

static float get_f32(const uint8_t *p) { return f32_from_bits(get_le32(p)); }

/* ---- names ---- */

const char *wire_format_name(int format)
{
    return format > 0 && format < WIRE_FORMAT_COUNT ? wire_format_names[format] : "?";
}

int wire_format_parse(const char *name)
{
    for (int f = 1; f < WIRE_FORMAT_COUNT; f++)
        if (name && !strcmp(name, wire_format_names[f]))
            return f;
    return offnas_error("wire format \"%.40s\" is not u8, fp32, fp16 or int8", name ? name : "");
}

int wire_format_bytes(int format)
{
    return format > 0 && format < WIRE_FORMAT_COUNT ? wire_format_sizes[format] : 0;
}

const char *wire_error_name(int code)
{
    return code > 0 && code < WIRE_E_COUNT ? wire_error_names[code] : "?";
}

/* ---- fp16 ---- */

uint16_t wire_fp16_from_float(float x)
{
    uint32_t bits = f32_bits(x);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    int exp = (int)((bits >> 23) & 0xff);
    uint32_t mant = bits & 0x7fffffu;
    if (exp == 0xff)
        return (uint16_t)(sign | (mant ? 0x7e00u : 0x7c00u));
    int e = exp - 127 + 15;
    uint32_t h;
    if (e >= 31)
        return (uint16_t)(sign | 0x7bffu); /* beyond the largest half: clamp */
    if (e <= 0) {
        if (e < -10)
            return sign; /* below half the smallest subnormal: +-0 */
        uint32_t m = mant | 0x800000u;
        int shift = 14 - e; /* 14..24 */
        h = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++; /* may become the smallest normal, which is the right encoding */
    } else {
        h = ((uint32_t)e << 10) | (mant >> 13);
        uint32_t rem = mant & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
            h++; /* a carry into the exponent is right too */
    }
    if (h >= 0x7c00u)
        h = 0x7bffu;
    return (uint16_t)(sign | h);
}

float wire_fp16_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    int exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    if (exp == 31)
        return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    return f32_from_bits(sign | ((uint32_t)(exp + 112) << 23) | (mant << 13));
}

/* ---- quantisation ---- */

void wire_quant_params(const float *x, size_t n, float *scale, int32_t *zero_point)
{
    float lo = 0, hi = 0; /* the range includes 0, so 0 is exact */
    for (size_t i = 0; i < n; i++) {
        if (x[i] < lo)
            lo = x[i];
        if (x[i] > hi)
            hi = x[i];
    }
    double range = (double)hi - (double)lo;
    float s = (float)(range / 255.0);
    if (s > 0 && s < FLT_MAX && (double)s * 255.0 < range)
        s = nextafterf(s, INFINITY); /* 255 steps must cover the range, or max would clamp */
    if (hi == lo || !(s > 0))
        s = 1; /* all zero, or a range too small for a float scale */
    float z = roundf(-128.0f - lo / s);
    *scale = s;
    *zero_point = z < -128 ? -128 : z > 127 ? 127 : (int32_t)z;
}

/* The int8 of x under (scale, zero_point); NaN gives zero_point. */
static int8_t quant_one(float x, float scale, int32_t zero_point)
{
    float r = roundf(x / scale) + (float)zero_point;
    if (r != r)
        return (int8_t)zero_point;
    return (int8_t)(r < -128 ? -128 : r > 127 ? 127 : (int)r);
}

static float dequant_one(int q, float scale, int32_t zero_point)
{
    return scale * (float)(q - zero_point);
}

void wire_fake_quant(float *x, size_t n, int format)
{
    if (format == WIRE_INT8) {
        float scale;
        int32_t zero;
        wire_quant_params(x, n, &scale, &zero);
        for (size_t i = 0; i < n; i++)
            x[i] = dequant_one(quant_one(x[i], scale, zero), scale, zero);
    } else if (format == WIRE_FP16) {
        for (size_t i = 0; i < n; i++)
            x[i] = wire_fp16_to_float(wire_fp16_from_float(x[i]));
    } else if (format == WIRE_U8) {
        for (size_t i = 0; i < n; i++) {
            float r = roundf(x[i]);
            x[i] = r > 255 ? 255 : r >= 0 ? r : 0; /* NaN: 0 */
        }
    }
}

/* ---- fingerprints ---- */

uint64_t wire_fingerprint(uint64_t h, const void *bytes, size_t n)
{
    return offnas_fnv1a64(bytes, n, h);
}

uint64_t wire_fingerprint_floats(uint64_t h, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t le[4];
        put_f32(le, x[i]);
        h = offnas_fnv1a64(le, sizeof le, h);
    }
    return h;
}

/* ---- shared field checks (encoders refuse what decoders refuse) ---- */

/* 0, or WIRE_E_FIELD with a message: a text of at most WIRE_MAX_TEXT bytes, none a control
 * character (so error messages quoting it stay one line). */
static int check_text(const char *what, const char *field, const uint8_t *s, size_t n)
{
    if (n > WIRE_MAX_TEXT) {
        offnas_error("%s: %s: %zu bytes, at most %d", what, field, n, WIRE_MAX_TEXT);
        return WIRE_E_FIELD;
    }
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == 0x7f) {
            offnas_error("%s: %s: control byte 0x%02x at %zu", what, field, s[i], i);
            return WIRE_E_FIELD;
        }
    return 0;
}

static int check_hello(const char *what, const struct wire_hello *m, size_t model_len)
{
    if (m->role != WIRE_ROLE_DEVICE && m->role != WIRE_ROLE_EDGE)
        return offnas_error("%s: role %d is not 1 (device) or 2 (edge)", what, m->role), WIRE_E_FIELD;
    if (m->split < 0 || m->split > 0xffff)
        return offnas_error("%s: split %d is not in 0..65535", what, m->split), WIRE_E_FIELD;
    if (m->total_channels < 0 || m->total_channels > WIRE_MAX_CHANNELS)
        return offnas_error("%s: total_channels %d is not in 0..%d", what, m->total_channels,
                            WIRE_MAX_CHANNELS), WIRE_E_FIELD;
    if (m->kept < 0 || m->kept > m->total_channels)
        return offnas_error("%s: kept %d is not in 0..total_channels %d", what, m->kept,
                            m->total_channels), WIRE_E_FIELD;
    if (m->format <= 0 || m->format >= WIRE_FORMAT_COUNT)
        return offnas_error("%s: format %d is not 1..4 (u8, fp32, fp16, int8)", what, m->format),
               WIRE_E_FIELD;
    return check_text(what, "model", (const uint8_t *)m->model, model_len);
}

/* scale and zero_point of a format: int8 scale finite, > 0 and with 255 * scale finite, zero
 * in -128..127; every other format scale 1 and zero 0. */
static int check_quant(const char *what, int format, float scale, int32_t zero)
{
    if (format == WIRE_INT8) {
        if (!(scale > 0) || !((double)scale * 255.0 <= FLT_MAX))
            return offnas_error("%s: scale %g is not finite and in (0, FLT_MAX/255] for int8",
                                what, scale), WIRE_E_FIELD;
        if (zero < -128 || zero > 127)
            return offnas_error("%s: zero_point %" PRId32 " is not in -128..127", what, zero),
                   WIRE_E_FIELD;
    } else {
        if (scale != 1.0f)
            return offnas_error("%s: scale %g is not 1 for %s", what, scale,
                                wire_format_name(format)), WIRE_E_FIELD;
        if (zero != 0)
            return offnas_error("%s: zero_point %" PRId32 " is not 0 for %s", what, zero,
                                wire_format_name(format)), WIRE_E_FIELD;
    }
    return 0;
}

/* Shape checks of a tensor; on success *values = h*w*c. */
static int check_shape(const char *what, int format, long h, long w, long c, long total,
                       size_t max_values, uint64_t *values)
{
    if (format <= 0 || format >= WIRE_FORMAT_COUNT)
        return offnas_error("%s: format %d is not 1..4 (u8, fp32, fp16, int8)", what, format),
               WIRE_E_FIELD;
    if (h < 1 || h > 0xffff || w < 1 || w > 0xffff)
        return offnas_error("%s: h x w %ld x %ld is not in 1..65535 each", what, h, w), WIRE_E_FIELD;
    if (total < 1 || total > WIRE_MAX_CHANNELS)
        return offnas_error("%s: total_channels %ld is not in 1..%d", what, total,
                            WIRE_MAX_CHANNELS), WIRE_E_FIELD;
    if (c < 1 || c > total)
        return offnas_error("%s: c %ld is not in 1..total_channels %ld", what, c, total),
               WIRE_E_FIELD;
    uint64_t n = (uint64_t)h * (uint64_t)w * (uint64_t)c; /* < 2^42: no overflow */
    uint64_t limit = max_values ? max_values : WIRE_MAX_VALUES;
    if (n > limit)
        return offnas_error("%s: h*w*c %ld*%ld*%ld = %" PRIu64 " values, at most %" PRIu64, what,
                            h, w, c, n, limit), WIRE_E_FIELD;
    *values = n;
    return 0;
}

static int check_channels(const char *what, const uint16_t *ch, int c, int total)
{
    for (int i = 0; i < c; i++) {
        if (ch[i] >= total)
            return offnas_error("%s: channels[%d]: %u is not below total_channels %d", what, i,
                                ch[i], total), WIRE_E_FIELD;
        if (i > 0 && ch[i] <= ch[i - 1])
            return offnas_error("%s: channels[%d]: %u is not above channels[%d] = %u", what, i,
                                ch[i], i - 1, ch[i - 1]), WIRE_E_FIELD;
    }
    return 0;
}

/* ---- buffer and frame ---- */

void wire_buf_free(struct wire_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Room for one frame of payload bytes at the end of b; returns the payload's start (the
 * header is written by frame_finish). Out of memory is fatal, as offnas_malloc. */
static uint8_t *frame_begin(struct wire_buf *b, size_t payload)
{
    size_t need = b->len + WIRE_HEADER_BYTES + payload;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        OFFNAS_ASSERT(p != NULL);
        b->data = p;
        b->cap = cap;
    }
    return b->data + b->len + WIRE_HEADER_BYTES;
}

/* Writes the header in front of the payload frame_begin returned and appends the frame. */
static int frame_finish(struct wire_buf *b, int type, size_t payload)
{
    uint8_t *hdr = b->data + b->len;
    memcpy(hdr, WIRE_MAGIC, 4);
    put_le16(hdr + 4, WIRE_VERSION);
    put_le16(hdr + 6, (uint16_t)type);
    put_le32(hdr + 8, (uint32_t)payload);
    put_le32(hdr + 12, (uint32_t)crc32(0L, hdr + WIRE_HEADER_BYTES, (uInt)payload));
    b->len += WIRE_HEADER_BYTES + payload;
    return 0;
}

/* ---- encoders ---- */

int wire_encode_hello(struct wire_buf *b, const struct wire_hello *m)
{
    size_t n = 0;
    while (n < sizeof m->model && m->model[n])
        n++; /* sizeof m->model: not terminated, refused as too long */
    if (check_hello("hello", m, n))
        return -1;
    uint8_t *p = frame_begin(b, HELLO_FIXED + n);
    p[0] = (uint8_t)m->role;
    put_le64(p + 1, m->fingerprint);
    put_le16(p + 9, (uint16_t)m->split);
    put_le16(p + 11, (uint16_t)m->total_channels);
    put_le16(p + 13, (uint16_t)m->kept);
    p[15] = (uint8_t)m->format;
    put_le16(p + 16, (uint16_t)n);
    memcpy(p + HELLO_FIXED, m->model, n);
    return frame_finish(b, WIRE_HELLO, HELLO_FIXED + n);
}

int wire_encode_tensor(struct wire_buf *b, uint64_t id, int format, const float *x,
                       const uint8_t *raw_u8, int h, int w, int c, int total,
                       const uint16_t *channels)
{
    uint64_t n;
    if (check_shape("tensor", format, h, w, c, total, 0, &n))
        return -1;
    uint16_t identity[WIRE_MAX_CHANNELS];
    if (!channels) {
        if (c != total)
            return offnas_error("tensor: no channel list, but c %d != total_channels %d", c, total);
        for (int i = 0; i < c; i++)
            identity[i] = (uint16_t)i;
        channels = identity;
    }
    if (check_channels("tensor", channels, c, total))
        return -1;
    if (format == WIRE_U8 ? !raw_u8 : !x)
        return offnas_error("tensor: no %s values given", format == WIRE_U8 ? "raw_u8" : "float");
    if (format != WIRE_U8)
        for (uint64_t i = 0; i < n; i++)
            if (!isfinite(x[i]))
                return offnas_error("tensor: value[%" PRIu64 "] %g is not finite", i, x[i]);
    float scale = 1;
    int32_t zero = 0;
    if (format == WIRE_INT8)
        wire_quant_params(x, n, &scale, &zero);
    if (check_quant("tensor", format, scale, zero))
        return -1; /* an int8 range beyond FLT_MAX */
    uint64_t payload = TENSOR_FIXED + 2 * (uint64_t)c + n * (uint64_t)wire_format_bytes(format);
    if (payload > WIRE_MAX_PAYLOAD)
        return offnas_error("tensor: %" PRIu64 " payload bytes, at most %u", payload,
                            WIRE_MAX_PAYLOAD);
    uint8_t *p = frame_begin(b, payload);
    put_le64(p, id);
    p[8] = (uint8_t)format;
    put_f32(p + 9, scale);
    put_le32(p + 13, (uint32_t)zero);
    put_le16(p + 17, (uint16_t)h);
    put_le16(p + 19, (uint16_t)w);
    put_le16(p + 21, (uint16_t)c);
    put_le16(p + 23, (uint16_t)total);
    uint8_t *q = p + TENSOR_FIXED;
    for (int i = 0; i < c; i++, q += 2)
        put_le16(q, channels[i]);
    for (uint64_t i = 0; i < n; i++) {
        switch (format) {
        case WIRE_U8: *q++ = raw_u8[i]; break;
        case WIRE_INT8: *q++ = (uint8_t)quant_one(x[i], scale, zero); break;
        case WIRE_FP16: put_le16(q, wire_fp16_from_float(x[i])), q += 2; break;
        default: put_f32(q, x[i]), q += 4; break;
        }
    }
    return frame_finish(b, WIRE_TENSOR, payload);
}

int wire_encode_result(struct wire_buf *b, uint64_t id, uint32_t edge_us, int classes,
                       const float *scores)
{
    if (classes < 1 || classes > WIRE_MAX_CLASSES)
        return offnas_error("result: classes %d is not in 1..%d", classes, WIRE_MAX_CLASSES);
    for (int i = 0; i < classes; i++)
        if (!isfinite(scores[i]))
            return offnas_error("result: scores[%d] %g is not finite", i, scores[i]);
    size_t payload = RESULT_FIXED + 4 * (size_t)classes;
    uint8_t *p = frame_begin(b, payload);
    put_le64(p, id);
    put_le32(p + 8, edge_us);
    put_le16(p + 12, (uint16_t)classes);
    for (int i = 0; i < classes; i++)
        put_f32(p + RESULT_FIXED + 4 * i, scores[i]);
    return frame_finish(b, WIRE_RESULT, payload);
}

int wire_encode_error(struct wire_buf *b, int code, uint64_t id, const char *msg)
{
    if (code < 1 || code >= WIRE_E_COUNT)
        return offnas_error("error: code %d is not 1..%d", code, WIRE_E_COUNT - 1);
    msg = msg ? msg : "";
    size_t n = strlen(msg);
    if (check_text("error", "message", (const uint8_t *)msg, n))
        return -1;
    uint8_t *p = frame_begin(b, ERROR_FIXED + n);
    put_le16(p, (uint16_t)code);
    put_le64(p + 2, id);
    put_le16(p + 10, (uint16_t)n);
    memcpy(p + ERROR_FIXED, msg, n);
    return frame_finish(b, WIRE_ERROR, ERROR_FIXED + n);
}

/* ---- decoders ---- */

int wire_decode_header(const uint8_t hdr[WIRE_HEADER_BYTES], uint32_t max_payload,
                       struct wire_header *h)
{
    if (memcmp(hdr, WIRE_MAGIC, 4) != 0) {
        offnas_error("frame: magic %02x %02x %02x %02x is not \"OFNW\"", hdr[0], hdr[1], hdr[2],
                     hdr[3]);
        return WIRE_E_MAGIC;
    }
    int version = get_le16(hdr + 4), type = get_le16(hdr + 6);
    uint32_t len = get_le32(hdr + 8);
    if (version != WIRE_VERSION) {
        offnas_error("frame: version %d, this build speaks %d", version, WIRE_VERSION);
        return WIRE_E_VERSION;
    }
    if (type < 1 || type >= WIRE_TYPE_COUNT) {
        offnas_error("frame: type %d is not 1..4 (hello, tensor, result, error)", type);
        return WIRE_E_TYPE;
    }
    if (len > max_payload) {
        offnas_error("frame: %s payload length %" PRIu32 " exceeds the limit %" PRIu32,
                     wire_type_names[type], len, max_payload);
        return WIRE_E_TOO_LARGE;
    }
    h->version = version;
    h->type = type;
    h->payload_bytes = len;
    h->crc = get_le32(hdr + 12);
    return 0;
}

int wire_check_crc(const struct wire_header *h, const uint8_t *payload)
{
    uint32_t crc = (uint32_t)crc32(0L, payload, (uInt)h->payload_bytes);
    if (crc != h->crc) {
        offnas_error("frame: crc 0x%08" PRIx32 " of the %s payload, the header says 0x%08" PRIx32,
                     crc, h->type > 0 && h->type < WIRE_TYPE_COUNT ? wire_type_names[h->type] : "?",
                     h->crc);
        return WIRE_E_CRC;
    }
    return 0;
}

/* 0 if len is exactly expected; else TRUNCATED (shorter) or FIELD (longer), with a message. */
static int check_length(const char *what, size_t len, uint64_t expected)
{
    if (len < expected) {
        offnas_error("%s: payload %zu bytes, truncated (expected %" PRIu64 ")", what, len, expected);
        return WIRE_E_TRUNCATED;
    }
    if (len > expected) {
        offnas_error("%s: payload %zu bytes, %" PRIu64 " expected (trailing bytes)", what, len,
                     expected);
        return WIRE_E_FIELD;
    }
    return 0;
}

/* A fixed part shorter than fixed bytes: TRUNCATED. */
static int check_fixed(const char *what, size_t len, size_t fixed)
{
    if (len < fixed) {
        offnas_error("%s: payload %zu bytes, truncated (the fixed part is %zu)", what, len, fixed);
        return WIRE_E_TRUNCATED;
    }
    return 0;
}

int wire_decode_hello(const uint8_t *p, size_t len, struct wire_hello *out)
{
    int rc;
    if ((rc = check_fixed("hello", len, HELLO_FIXED)))
        return rc;
    struct wire_hello m = {0};
    m.role = p[0];
    m.fingerprint = get_le64(p + 1);
    m.split = get_le16(p + 9);
    m.total_channels = get_le16(p + 11);
    m.kept = get_le16(p + 13);
    m.format = p[15];
    size_t n = get_le16(p + 16);
    if (n > WIRE_MAX_TEXT) {
        offnas_error("hello: model: %zu bytes, at most %d", n, WIRE_MAX_TEXT);
        return WIRE_E_FIELD;
    }
    if ((rc = check_length("hello", len, HELLO_FIXED + (uint64_t)n)))
        return rc;
    memcpy(m.model, p + HELLO_FIXED, n);
    m.model[n] = 0;
    if ((rc = check_hello("hello", &m, n)))
        return rc;
    *out = m;
    return 0;
}

int wire_decode_tensor(const uint8_t *p, size_t len, size_t max_values, struct wire_tensor *out)
{
    int rc;
    if ((rc = check_fixed("tensor", len, TENSOR_FIXED)))
        return rc;
    uint64_t id = get_le64(p);
    int format = p[8];
    float scale = get_f32(p + 9);
    int32_t zero = (int32_t)get_le32(p + 13);
    int h = get_le16(p + 17), w = get_le16(p + 19), c = get_le16(p + 21), total = get_le16(p + 23);
    uint64_t n;
    if ((rc = check_shape("tensor", format, h, w, c, total, max_values, &n)) ||
        (rc = check_quant("tensor", format, scale, zero)))
        return rc;
    uint64_t value_bytes = n * (uint64_t)wire_format_bytes(format);
    if ((rc = check_length("tensor", len, TENSOR_FIXED + 2 * (uint64_t)c + value_bytes)))
        return rc;
    out->id = id;
    out->format = format;
    out->scale = scale;
    out->zero_point = zero;
    out->h = h;
    out->w = w;
    out->c = c;
    out->total_channels = total;
    for (int i = 0; i < c; i++)
        out->channels[i] = get_le16(p + TENSOR_FIXED + 2 * i);
    if ((rc = check_channels("tensor", out->channels, c, total)))
        return rc;
    const uint8_t *v = p + TENSOR_FIXED + 2 * (size_t)c;
    for (uint64_t i = 0; i < n; i++) {
        int bad = format == WIRE_FP32   ? !isfinite(get_f32(v + 4 * i))
                  : format == WIRE_FP16 ? (get_le16(v + 2 * i) & 0x7c00u) == 0x7c00u
                                        : 0;
        if (bad) {
            offnas_error("tensor: value[%" PRIu64 "] is not finite (%s)", i, wire_format_name(format));
            return WIRE_E_FIELD;
        }
    }
    out->values = v;
    out->value_bytes = (size_t)value_bytes;
    return 0;
}

int wire_decode_result(const uint8_t *p, size_t len, struct wire_result *out)
{
    int rc;
    if ((rc = check_fixed("result", len, RESULT_FIXED)))
        return rc;
    int classes = get_le16(p + 12);
    if (classes < 1 || classes > WIRE_MAX_CLASSES) {
        offnas_error("result: classes %d is not in 1..%d", classes, WIRE_MAX_CLASSES);
        return WIRE_E_FIELD;
    }
    if ((rc = check_length("result", len, RESULT_FIXED + 4 * (uint64_t)classes)))
        return rc;
    for (int i = 0; i < classes; i++) {
        float s = get_f32(p + RESULT_FIXED + 4 * i);
        if (!isfinite(s)) {
            offnas_error("result: scores[%d] %g is not finite", i, s);
            return WIRE_E_FIELD;
        }
        out->scores[i] = s;
    }
    out->id = get_le64(p);
    out->edge_us = get_le32(p + 8);
    out->classes = classes;
    return 0;
}

int wire_decode_error(const uint8_t *p, size_t len, struct wire_error_msg *out)
{
    int rc;
    if ((rc = check_fixed("error", len, ERROR_FIXED)))
        return rc;
    int code = get_le16(p);
    size_t n = get_le16(p + 10);
    if (code < 1 || code >= WIRE_E_COUNT) {
        offnas_error("error: code %d is not 1..%d", code, WIRE_E_COUNT - 1);
        return WIRE_E_FIELD;
    }
    if (n > WIRE_MAX_TEXT) {
        offnas_error("error: message: %zu bytes, at most %d", n, WIRE_MAX_TEXT);
        return WIRE_E_FIELD;
    }
    if ((rc = check_length("error", len, ERROR_FIXED + (uint64_t)n)) ||
        (rc = check_text("error", "message", p + ERROR_FIXED, n)))
        return rc;
    out->code = code;
    out->id = get_le64(p + 2);
    memcpy(out->message, p + ERROR_FIXED, n);
    out->message[n] = 0;
    return 0;
}

int wire_tensor_dequantize(const struct wire_tensor *t, float *out)
{
    size_t n = (size_t)t->h * (size_t)t->w * (size_t)t->c;
    const uint8_t *v = t->values;
    for (size_t i = 0; i < n; i++) {
        switch (t->format) {
        case WIRE_U8: out[i] = dequant_one(v[i], t->scale, t->zero_point); break;
        case WIRE_INT8: out[i] = dequant_one((int8_t)v[i], t->scale, t->zero_point); break;
        case WIRE_FP16: out[i] = wire_fp16_to_float(get_le16(v + 2 * i)); break;
        default: out[i] = get_f32(v + 4 * i); break;
        }
    }
    return 0;
}

int wire_hello_compare(const struct wire_hello *mine, const struct wire_hello *theirs)
{
    if (mine->fingerprint == theirs->fingerprint && mine->split == theirs->split &&
        mine->total_channels == theirs->total_channels && mine->kept == theirs->kept &&
        mine->format == theirs->format)
        return 0;
    offnas_error("hello: model mismatch: mine \"%s\" (fingerprint %016" PRIx64 "), theirs \"%s\" "
                 "(fingerprint %016" PRIx64 ")", mine->model, mine->fingerprint, theirs->model,
                 theirs->fingerprint);
    return WIRE_E_MISMATCH;
}
