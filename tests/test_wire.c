/* Tests of wire: the split runtime's frames round trip in every message type and value format;
 * headers, truncated payloads and out-of-range fields are refused with their code and a
 * one-line message naming the field; encoders refuse what decoders refuse. */
#include "testing.h"

#include "common.h"
#include "wire.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define EXPECT_ERROR(part)                                                                      \
    do {                                                                                        \
        EXPECT_CONTAINS(offnas_last_error(), part);                                             \
        CU_ASSERT(strchr(offnas_last_error(), '\n') == NULL);                                   \
    } while (0)

/* The frame at the start of b: header decoded and CRC checked; returns the payload. */
static const uint8_t *frame(const struct wire_buf *b, int type, struct wire_header *h)
{
    CU_ASSERT_FATAL(b->len >= WIRE_HEADER_BYTES);
    EXPECT_EQ_INT(wire_decode_header(b->data, WIRE_MAX_PAYLOAD, h), 0);
    EXPECT_EQ_INT(h->type, type);
    EXPECT_EQ_INT(b->len, WIRE_HEADER_BYTES + h->payload_bytes);
    EXPECT_EQ_INT(wire_check_crc(h, b->data + WIRE_HEADER_BYTES), 0);
    return b->data + WIRE_HEADER_BYTES;
}

static struct wire_hello sample_hello(void)
{
    struct wire_hello m = {.role = WIRE_ROLE_DEVICE, .fingerprint = 0x0123456789abcdefULL,
                           .split = 2, .total_channels = 24, .kept = 9, .format = WIRE_INT8};
    strcpy(m.model, "k3e1,k5e3,k3e3; split 2; 9/24 channels; int8");
    return m;
}

/* A tensor of 2x3 with channels {1, 4, 6} of 8 (c = 3): values spread over [-2, 5]. */
enum { TH = 2, TW = 3, TC = 3, TTOTAL = 8, TN = TH * TW * TC };
static const uint16_t TCHANNELS[TC] = {1, 4, 6};

static void sample_values(float *x)
{
    for (int i = 0; i < TN; i++)
        x[i] = -2.0f + 7.0f * (float)i / (TN - 1) + (i == 5 ? 0.0f : 0.01f * (float)(i % 3));
    x[5] = 0.0f;
}

/* Encodes x in format and decodes it back into t and out (TN floats). */
static void tensor_round_trip(int format, const float *x, const uint8_t *raw, struct wire_tensor *t,
                              float *out)
{
    struct wire_buf b = {0};
    CU_ASSERT_FATAL(wire_encode_tensor(&b, 77, format, x, raw, TH, TW, TC, TTOTAL, TCHANNELS) == 0);
    struct wire_header h;
    const uint8_t *p = frame(&b, WIRE_TENSOR, &h);
    EXPECT_EQ_INT(wire_decode_tensor(p, h.payload_bytes, 0, t), 0);
    EXPECT_EQ_INT(t->id, 77);
    EXPECT_EQ_INT(t->format, format);
    EXPECT_EQ_INT(t->h, TH);
    EXPECT_EQ_INT(t->w, TW);
    EXPECT_EQ_INT(t->c, TC);
    EXPECT_EQ_INT(t->total_channels, TTOTAL);
    CU_ASSERT(memcmp(t->channels, TCHANNELS, sizeof TCHANNELS) == 0);
    EXPECT_EQ_INT(t->value_bytes, (size_t)TN * wire_format_bytes(format));
    EXPECT_EQ_INT(wire_tensor_dequantize(t, out), 0);
    wire_buf_free(&b);
}

TEST(wire_hello_round_trips_and_matches_itself)
{
    struct wire_hello m = sample_hello(), back;
    struct wire_buf b = {0};
    CU_ASSERT_FATAL(wire_encode_hello(&b, &m) == 0);
    EXPECT_EQ_INT(b.len, WIRE_HEADER_BYTES + 18 + strlen(m.model));
    CU_ASSERT(memcmp(b.data, "OFNW\x01\x00\x01\x00", 8) == 0); /* magic, version 1, type 1 LE */
    struct wire_header h;
    const uint8_t *p = frame(&b, WIRE_HELLO, &h);
    EXPECT_EQ_INT(wire_decode_hello(p, h.payload_bytes, &back), 0);
    EXPECT_EQ_INT(back.role, m.role);
    CU_ASSERT(back.fingerprint == m.fingerprint);
    EXPECT_EQ_INT(back.split, 2);
    EXPECT_EQ_INT(back.total_channels, 24);
    EXPECT_EQ_INT(back.kept, 9);
    EXPECT_EQ_INT(back.format, WIRE_INT8);
    CU_ASSERT_STRING_EQUAL(back.model, m.model);
    EXPECT_EQ_INT(p[1], 0xef); /* fingerprint little-endian */
    EXPECT_EQ_INT(wire_hello_compare(&m, &back), 0);
    wire_buf_free(&b);
}

TEST(wire_result_and_error_round_trip)
{
    float scores[10];
    for (int i = 0; i < 10; i++)
        scores[i] = (float)i * 0.37f - 1.5f;
    struct wire_buf b = {0};
    CU_ASSERT_FATAL(wire_encode_result(&b, 0xfeedfacecafeULL, 1234, 10, scores) == 0);
    struct wire_header h;
    const uint8_t *p = frame(&b, WIRE_RESULT, &h);
    static struct wire_result r;
    EXPECT_EQ_INT(wire_decode_result(p, h.payload_bytes, &r), 0);
    CU_ASSERT(r.id == 0xfeedfacecafeULL);
    EXPECT_EQ_INT(r.edge_us, 1234);
    EXPECT_EQ_INT(r.classes, 10);
    CU_ASSERT(memcmp(r.scores, scores, sizeof scores) == 0);

    b.len = 0;
    CU_ASSERT_FATAL(wire_encode_error(&b, WIRE_E_BUSY, 42, "edge busy: 4 requests queued") == 0);
    p = frame(&b, WIRE_ERROR, &h);
    struct wire_error_msg e;
    EXPECT_EQ_INT(wire_decode_error(p, h.payload_bytes, &e), 0);
    EXPECT_EQ_INT(e.code, WIRE_E_BUSY);
    EXPECT_EQ_INT(e.id, 42);
    CU_ASSERT_STRING_EQUAL(e.message, "edge busy: 4 requests queued");
    CU_ASSERT_STRING_EQUAL(wire_error_name(WIRE_E_BUSY), "busy");
    wire_buf_free(&b);
}

TEST(wire_buffer_holds_several_frames_in_order)
{
    struct wire_buf b = {0};
    struct wire_hello m = sample_hello();
    float s = 1;
    CU_ASSERT_FATAL(wire_encode_hello(&b, &m) == 0);
    size_t first = b.len;
    CU_ASSERT_FATAL(wire_encode_result(&b, 1, 2, 1, &s) == 0);
    struct wire_header h;
    EXPECT_EQ_INT(wire_decode_header(b.data + first, WIRE_MAX_PAYLOAD, &h), 0);
    EXPECT_EQ_INT(h.type, WIRE_RESULT);
    EXPECT_EQ_INT(first + WIRE_HEADER_BYTES + h.payload_bytes, b.len);
    wire_buf_free(&b);
    CU_ASSERT(b.data == NULL && b.len == 0);
}

TEST(wire_fp32_tensor_is_exact)
{
    float x[TN], out[TN];
    static struct wire_tensor t;
    sample_values(x);
    x[3] = 1e-40f; /* a subnormal float goes through unchanged */
    tensor_round_trip(WIRE_FP32, x, NULL, &t, out);
    CU_ASSERT(memcmp(x, out, sizeof x) == 0);
    CU_ASSERT(t.scale == 1.0f && t.zero_point == 0);
}

TEST(wire_u8_tensor_is_exact)
{
    uint8_t raw[TN];
    float out[TN];
    static struct wire_tensor t;
    for (int i = 0; i < TN; i++)
        raw[i] = (uint8_t)(i * 15);
    raw[0] = 255;
    tensor_round_trip(WIRE_U8, NULL, raw, &t, out);
    for (int i = 0; i < TN; i++)
        EXPECT_EQ_INT(out[i], raw[i]);
}

TEST(wire_fp16_known_values)
{
    EXPECT_EQ_INT(wire_fp16_from_float(1.0f), 0x3c00);
    EXPECT_EQ_INT(wire_fp16_from_float(-2.0f), 0xc000);
    EXPECT_EQ_INT(wire_fp16_from_float(65504.0f), 0x7bff);
    EXPECT_EQ_INT(wire_fp16_from_float(1e6f), 0x7bff);   /* clamped, not inf */
    EXPECT_EQ_INT(wire_fp16_from_float(-1e6f), 0xfbff);
    EXPECT_EQ_INT(wire_fp16_from_float(65519.0f), 0x7bff); /* below the rounding point to inf */
    EXPECT_EQ_INT(wire_fp16_from_float(ldexpf(1, -24)), 0x0001); /* smallest subnormal */
    EXPECT_EQ_INT(wire_fp16_from_float(ldexpf(1, -25)), 0x0000); /* tie to even: 0 */
    EXPECT_EQ_INT(wire_fp16_from_float(ldexpf(3, -25)), 0x0002); /* 1.5 ulp: tie to even 2 */
    EXPECT_EQ_INT(wire_fp16_from_float(ldexpf(1, -14)), 0x0400); /* smallest normal */
    EXPECT_EQ_INT(wire_fp16_from_float(-0.0f), 0x8000);
    /* 1 + 2^-11 is halfway between 1 and 1 + 2^-10: to even (1.0); 1 + 3 * 2^-11 to 1 + 2^-9 */
    EXPECT_EQ_INT(wire_fp16_from_float(1.0f + ldexpf(1, -11)), 0x3c00);
    EXPECT_EQ_INT(wire_fp16_from_float(1.0f + ldexpf(3, -11)), 0x3c02);
    EXPECT_EQ_INT(wire_fp16_from_float(1.0f + ldexpf(1, -11) + ldexpf(1, -20)), 0x3c01);
    EXPECT_EQ_INT(wire_fp16_from_float(INFINITY), 0x7c00);
    CU_ASSERT(isnan(wire_fp16_to_float(wire_fp16_from_float(NAN))));
    CU_ASSERT(wire_fp16_to_float(0x3c00) == 1.0f);
    CU_ASSERT(wire_fp16_to_float(0x7bff) == 65504.0f);
    CU_ASSERT(wire_fp16_to_float(0x0001) == ldexpf(1, -24));
    CU_ASSERT(wire_fp16_to_float(0x03ff) == ldexpf(1023, -24));
    float nz = wire_fp16_to_float(0x8000);
    CU_ASSERT(nz == 0.0f && signbit(nz));
    /* every finite half goes through float and back unchanged */
    int bad = 0;
    for (uint32_t u = 0; u < 0x10000; u++)
        if ((u & 0x7c00) != 0x7c00 && wire_fp16_from_float(wire_fp16_to_float((uint16_t)u)) != u)
            bad++;
    EXPECT_EQ_INT(bad, 0);
}

TEST(wire_fp16_tensor_is_within_half_precision)
{
    float x[TN], out[TN];
    static struct wire_tensor t;
    sample_values(x);
    x[0] = 70000.0f; /* clamped to 65504 */
    tensor_round_trip(WIRE_FP16, x, NULL, &t, out);
    EXPECT_NEAR(out[0], 65504.0, 0);
    for (int i = 1; i < TN; i++)
        EXPECT_NEAR(out[i], x[i], fabs(x[i]) * ldexp(1, -11) + ldexp(1, -25));
}

TEST(wire_int8_error_is_at_most_half_a_step_and_zero_is_exact)
{
    float x[TN], out[TN];
    static struct wire_tensor t;
    sample_values(x);
    tensor_round_trip(WIRE_INT8, x, NULL, &t, out);
    float scale;
    int32_t zero;
    wire_quant_params(x, TN, &scale, &zero);
    CU_ASSERT(t.scale == scale && t.zero_point == zero);
    EXPECT_NEAR(scale, 7.02 / 255, 1e-6); /* range [-2, 5.02] */
    for (int i = 0; i < TN; i++)
        EXPECT_NEAR(out[i], x[i], scale * (0.5 + 1e-4)); /* half a step, up to float rounding */
    CU_ASSERT(out[5] == 0.0f);
    /* wire_fake_quant is exactly what the receiver reconstructs */
    float fq[TN];
    memcpy(fq, x, sizeof x);
    wire_fake_quant(fq, TN, WIRE_INT8);
    CU_ASSERT(memcmp(fq, out, sizeof fq) == 0);
}

TEST(wire_quant_params_include_zero_and_handle_constant_input)
{
    float pos[3] = {1, 2, 3}, zeros[4] = {0}, neg[2] = {-5, -1};
    float scale;
    int32_t zero;
    wire_quant_params(pos, 3, &scale, &zero); /* range [0, 3] */
    EXPECT_NEAR(scale, 3.0 / 255, 1e-7);
    EXPECT_EQ_INT(zero, -128);
    wire_quant_params(zeros, 4, &scale, &zero);
    CU_ASSERT(scale == 1.0f);
    EXPECT_EQ_INT(zero, -128);
    wire_fake_quant(zeros, 4, WIRE_INT8);
    CU_ASSERT(zeros[0] == 0 && zeros[3] == 0);
    wire_quant_params(neg, 2, &scale, &zero); /* range [-5, 0] */
    EXPECT_EQ_INT(zero, 127);
    wire_fake_quant(neg, 2, WIRE_INT8);
    EXPECT_NEAR(neg[0], -5, 5.0 / 255 / 2);
    float u[3] = {-3.2f, 17.6f, 300};
    wire_fake_quant(u, 3, WIRE_U8);
    CU_ASSERT(u[0] == 0 && u[1] == 18 && u[2] == 255);
}

TEST(wire_format_names_parse_back)
{
    for (int f = WIRE_U8; f <= WIRE_INT8; f++)
        EXPECT_EQ_INT(wire_format_parse(wire_format_name(f)), f);
    EXPECT_EQ_INT(wire_format_parse("fp64"), -1);
    EXPECT_ERROR("\"fp64\"");
    EXPECT_EQ_INT(wire_format_bytes(WIRE_FP16), 2);
    EXPECT_EQ_INT(wire_format_bytes(9), 0);
    CU_ASSERT_STRING_EQUAL(wire_format_name(9), "?");
}

/* A valid result frame to damage. */
static void result_frame(struct wire_buf *b)
{
    float s[3] = {1, 2, 3};
    b->len = 0;
    CU_ASSERT_FATAL(wire_encode_result(b, 5, 6, 3, s) == 0);
}

TEST(wire_header_refusals_give_code_and_field)
{
    struct wire_buf b = {0};
    struct wire_header h;
    result_frame(&b);
    b.data[0] = 'X';
    EXPECT_EQ_INT(wire_decode_header(b.data, WIRE_MAX_PAYLOAD, &h), WIRE_E_MAGIC);
    EXPECT_ERROR("frame: magic");
    result_frame(&b);
    b.data[4] = 7;
    EXPECT_EQ_INT(wire_decode_header(b.data, WIRE_MAX_PAYLOAD, &h), WIRE_E_VERSION);
    EXPECT_ERROR("frame: version 7, this build speaks 1");
    result_frame(&b);
    b.data[6] = 9;
    EXPECT_EQ_INT(wire_decode_header(b.data, WIRE_MAX_PAYLOAD, &h), WIRE_E_TYPE);
    EXPECT_ERROR("frame: type 9");
    result_frame(&b);
    b.data[6] = 0;
    EXPECT_EQ_INT(wire_decode_header(b.data, WIRE_MAX_PAYLOAD, &h), WIRE_E_TYPE);
    result_frame(&b);
    EXPECT_EQ_INT(wire_decode_header(b.data, 25, &h), WIRE_E_TOO_LARGE); /* payload is 26 */
    EXPECT_ERROR("payload length 26 exceeds the limit 25");
    EXPECT_EQ_INT(wire_decode_header(b.data, 26, &h), 0);
    b.data[11] = 0x80; /* 2 GiB */
    EXPECT_EQ_INT(wire_decode_header(b.data, WIRE_MAX_PAYLOAD, &h), WIRE_E_TOO_LARGE);
    result_frame(&b);
    b.data[WIRE_HEADER_BYTES + 20] ^= 1;
    EXPECT_EQ_INT(wire_decode_header(b.data, WIRE_MAX_PAYLOAD, &h), 0);
    EXPECT_EQ_INT(wire_check_crc(&h, b.data + WIRE_HEADER_BYTES), WIRE_E_CRC);
    EXPECT_ERROR("frame: crc");
    wire_buf_free(&b);
}

/* Decodes the payload of the frame of b at every length below its own: each refused with
 * TRUNCATED or FIELD and a one-line message; returns how many were not. */
static int truncations_accepted(const struct wire_buf *b)
{
    struct wire_header h;
    CU_ASSERT_FATAL(wire_decode_header(b->data, WIRE_MAX_PAYLOAD, &h) == 0);
    int accepted = 0;
    for (size_t n = 0; n < h.payload_bytes; n++) {
        /* a copy of exactly n bytes, so ASan sees any read past the end */
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, b->data + WIRE_HEADER_BYTES, n);
        static struct wire_hello m;
        static struct wire_tensor t;
        static struct wire_result r;
        static struct wire_error_msg e;
        int rc = h.type == WIRE_HELLO    ? wire_decode_hello(p, n, &m)
                 : h.type == WIRE_TENSOR ? wire_decode_tensor(p, n, 0, &t)
                 : h.type == WIRE_RESULT ? wire_decode_result(p, n, &r)
                                         : wire_decode_error(p, n, &e);
        if (rc != WIRE_E_TRUNCATED && rc != WIRE_E_FIELD)
            accepted++;
        CU_ASSERT(strchr(offnas_last_error(), '\n') == NULL);
        free(p);
    }
    return accepted;
}

TEST(wire_truncated_payloads_are_refused_at_every_length)
{
    struct wire_buf b = {0};
    struct wire_hello m = sample_hello();
    CU_ASSERT_FATAL(wire_encode_hello(&b, &m) == 0);
    EXPECT_EQ_INT(truncations_accepted(&b), 0);
    float x[TN];
    sample_values(x);
    for (int f = WIRE_FP32; f <= WIRE_INT8; f++) {
        b.len = 0;
        CU_ASSERT_FATAL(wire_encode_tensor(&b, 1, f, x, NULL, TH, TW, TC, TTOTAL, TCHANNELS) == 0);
        EXPECT_EQ_INT(truncations_accepted(&b), 0);
    }
    uint8_t raw[TN] = {0};
    b.len = 0;
    CU_ASSERT_FATAL(wire_encode_tensor(&b, 1, WIRE_U8, NULL, raw, TH, TW, TC, TTOTAL, TCHANNELS) == 0);
    EXPECT_EQ_INT(truncations_accepted(&b), 0);
    result_frame(&b);
    EXPECT_EQ_INT(truncations_accepted(&b), 0);
    b.len = 0;
    CU_ASSERT_FATAL(wire_encode_error(&b, WIRE_E_STATE, 3, "tensor before hello") == 0);
    EXPECT_EQ_INT(truncations_accepted(&b), 0);
    /* the exact length decodes; one byte more is refused */
    struct wire_error_msg e;
    EXPECT_EQ_INT(wire_decode_error(b.data + WIRE_HEADER_BYTES, b.len - WIRE_HEADER_BYTES, &e), 0);
    b.data = realloc(b.data, b.len + 1);
    b.data[b.len] = 'x';
    EXPECT_EQ_INT(wire_decode_error(b.data + WIRE_HEADER_BYTES, b.len - WIRE_HEADER_BYTES + 1, &e),
                  WIRE_E_FIELD);
    EXPECT_ERROR("trailing");
    wire_buf_free(&b);
}

/* A valid fp32 tensor payload (TH x TW x TC of TTOTAL) in b, the payload returned. */
static uint8_t *tensor_payload(struct wire_buf *b, int format, size_t *len)
{
    float x[TN];
    sample_values(x);
    b->len = 0;
    CU_ASSERT_FATAL(wire_encode_tensor(b, 9, format, x, NULL, TH, TW, TC, TTOTAL, TCHANNELS) == 0);
    *len = b->len - WIRE_HEADER_BYTES;
    return b->data + WIRE_HEADER_BYTES;
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

TEST(wire_tensor_out_of_range_fields_are_refused)
{
    struct wire_buf b = {0};
    static struct wire_tensor t;
    size_t len;
    uint8_t *p = tensor_payload(&b, WIRE_FP32, &len);
    EXPECT_EQ_INT(wire_decode_tensor(p, len, 0, &t), 0);
    /* channel offsets: 25 + 2i; h at 17, w 19, c 21, total 23, scale at 9 */
    put16(p + 25 + 2 * 2, 8); /* channels[2] = 8 = total */
    EXPECT_EQ_INT(wire_decode_tensor(p, len, 0, &t), WIRE_E_FIELD);
    EXPECT_ERROR("tensor: channels[2]: 8 is not below total_channels 8");
    p = tensor_payload(&b, WIRE_FP32, &len);
    put16(p + 25 + 2 * 1, 1); /* channels {1, 1, 6} */
    EXPECT_EQ_INT(wire_decode_tensor(p, len, 0, &t), WIRE_E_FIELD);
    EXPECT_ERROR("channels[1]: 1 is not above channels[0] = 1");
    p = tensor_payload(&b, WIRE_FP32, &len);
    put16(p + 21, 0);
    EXPECT_EQ_INT(wire_decode_tensor(p, len, 0, &t), WIRE_E_FIELD);
    EXPECT_ERROR("tensor: c 0");
    p = tensor_payload(&b, WIRE_FP32, &len);
    put16(p + 17, 0xffff), put16(p + 19, 0xffff), put16(p + 21, 1024), put16(p + 23, 1024);
    EXPECT_EQ_INT(wire_decode_tensor(p, len, 0, &t), WIRE_E_FIELD); /* 2^42 values */
    EXPECT_ERROR("h*w*c");
    p = tensor_payload(&b, WIRE_FP32, &len);
    EXPECT_EQ_INT(wire_decode_tensor(p, len, TN - 1, &t), WIRE_E_FIELD); /* the caller's limit */
    EXPECT_ERROR("at most 17");
    p = tensor_payload(&b, WIRE_FP32, &len);
    p[8] = 9;
    EXPECT_EQ_INT(wire_decode_tensor(p, len, 0, &t), WIRE_E_FIELD);
    EXPECT_ERROR("tensor: format 9");
    p = tensor_payload(&b, WIRE_FP32, &len);
    memcpy(p + 25 + 2 * TC + 4 * 3, "\x00\x00\xc0\x7f", 4); /* value[3] = NaN */
    EXPECT_EQ_INT(wire_decode_tensor(p, len, 0, &t), WIRE_E_FIELD);
    EXPECT_ERROR("tensor: value[3] is not finite");
    p = tensor_payload(&b, WIRE_FP16, &len);
    put16(p + 25 + 2 * TC + 2 * 4, 0x7c00); /* fp16 value[4] = inf */
    EXPECT_EQ_INT(wire_decode_tensor(p, len, 0, &t), WIRE_E_FIELD);
    EXPECT_ERROR("value[4]");
    p = tensor_payload(&b, WIRE_INT8, &len);
    memcpy(p + 9, "\x00\x00\xc0\x7f", 4); /* scale NaN */
    EXPECT_EQ_INT(wire_decode_tensor(p, len, 0, &t), WIRE_E_FIELD);
    EXPECT_ERROR("tensor: scale nan");
    p = tensor_payload(&b, WIRE_INT8, &len);
    memset(p + 9, 0, 4); /* scale 0 */
    EXPECT_EQ_INT(wire_decode_tensor(p, len, 0, &t), WIRE_E_FIELD);
    EXPECT_ERROR("scale 0");
    p = tensor_payload(&b, WIRE_INT8, &len);
    memcpy(p + 13, "\x80\x00\x00\x00", 4); /* zero_point 128 */
    EXPECT_EQ_INT(wire_decode_tensor(p, len, 0, &t), WIRE_E_FIELD);
    EXPECT_ERROR("zero_point 128");
    wire_buf_free(&b);
}

TEST(wire_other_messages_out_of_range_fields_are_refused)
{
    struct wire_buf b = {0};
    static struct wire_result r;
    result_frame(&b);
    uint8_t *p = b.data + WIRE_HEADER_BYTES;
    size_t len = b.len - WIRE_HEADER_BYTES;
    put16(p + 12, 0);
    EXPECT_EQ_INT(wire_decode_result(p, len, &r), WIRE_E_FIELD);
    EXPECT_ERROR("result: classes 0");
    result_frame(&b);
    p = b.data + WIRE_HEADER_BYTES;
    memcpy(p + 14 + 4, "\x00\x00\x80\x7f", 4); /* scores[1] = inf */
    EXPECT_EQ_INT(wire_decode_result(p, len, &r), WIRE_E_FIELD);
    EXPECT_ERROR("result: scores[1] inf");

    struct wire_hello m = sample_hello(), back;
    b.len = 0;
    CU_ASSERT_FATAL(wire_encode_hello(&b, &m) == 0);
    p = b.data + WIRE_HEADER_BYTES;
    len = b.len - WIRE_HEADER_BYTES;
    p[0] = 3;
    EXPECT_EQ_INT(wire_decode_hello(p, len, &back), WIRE_E_FIELD);
    EXPECT_ERROR("hello: role 3");
    p[0] = 1;
    put16(p + 13, 25); /* kept 25 > total 24 */
    EXPECT_EQ_INT(wire_decode_hello(p, len, &back), WIRE_E_FIELD);
    EXPECT_ERROR("hello: kept 25");
    put16(p + 13, 9);
    p[18 + 3] = '\n';
    EXPECT_EQ_INT(wire_decode_hello(p, len, &back), WIRE_E_FIELD);
    EXPECT_ERROR("hello: model: control byte 0x0a at 3");

    b.len = 0;
    CU_ASSERT_FATAL(wire_encode_error(&b, WIRE_E_TIMEOUT, 0, NULL) == 0);
    p = b.data + WIRE_HEADER_BYTES;
    len = b.len - WIRE_HEADER_BYTES;
    struct wire_error_msg e;
    EXPECT_EQ_INT(wire_decode_error(p, len, &e), 0);
    CU_ASSERT_STRING_EQUAL(e.message, "");
    put16(p, WIRE_E_COUNT);
    EXPECT_EQ_INT(wire_decode_error(p, len, &e), WIRE_E_FIELD);
    EXPECT_ERROR("error: code 13");
    put16(p, 1);
    put16(p + 10, 300);
    EXPECT_EQ_INT(wire_decode_error(p, len, &e), WIRE_E_FIELD);
    EXPECT_ERROR("error: message: 300 bytes");
    wire_buf_free(&b);
}

TEST(wire_fingerprint_mismatch_names_both_models)
{
    struct wire_hello mine = sample_hello(), theirs = sample_hello();
    theirs.role = WIRE_ROLE_EDGE;
    EXPECT_EQ_INT(wire_hello_compare(&mine, &theirs), 0);
    theirs.fingerprint = 0xdeadbeef00000001ULL;
    strcpy(theirs.model, "k5e6,k3e1; split 3; 16/32 channels; fp16");
    EXPECT_EQ_INT(wire_hello_compare(&mine, &theirs), WIRE_E_MISMATCH);
    EXPECT_ERROR("mine \"k3e1,k5e3,k3e3; split 2; 9/24 channels; int8\" (fingerprint 0123456789abcdef)");
    EXPECT_ERROR("theirs \"k5e6,k3e1; split 3; 16/32 channels; fp16\" (fingerprint deadbeef00000001)");
    theirs = sample_hello();
    theirs.format = WIRE_FP16; /* same weights, different wire format: still a mismatch */
    EXPECT_EQ_INT(wire_hello_compare(&mine, &theirs), WIRE_E_MISMATCH);
}

TEST(wire_fingerprint_is_fnv1a_chainable_and_little_endian)
{
    EXPECT_EQ_INT(wire_fingerprint(WIRE_FINGERPRINT_SEED, "", 0), (long long)WIRE_FINGERPRINT_SEED);
    CU_ASSERT(wire_fingerprint(WIRE_FINGERPRINT_SEED, "a", 1) == 0xaf63dc4c8601ec8cULL);
    uint64_t ab = wire_fingerprint(WIRE_FINGERPRINT_SEED, "ab", 2);
    CU_ASSERT(wire_fingerprint(wire_fingerprint(WIRE_FINGERPRINT_SEED, "a", 1), "b", 1) == ab);
    float one = 1.0f;
    const uint8_t le[4] = {0x00, 0x00, 0x80, 0x3f};
    CU_ASSERT(wire_fingerprint_floats(WIRE_FINGERPRINT_SEED, &one, 1) ==
              wire_fingerprint(WIRE_FINGERPRINT_SEED, le, 4));
}

TEST(wire_encoders_refuse_what_decoders_refuse)
{
    struct wire_buf b = {0};
    float x[TN];
    sample_values(x);
    uint16_t dup[TC] = {1, 1, 6}, big[TC] = {1, 4, 8};
    EXPECT_EQ_INT(wire_encode_tensor(&b, 1, WIRE_FP32, x, NULL, TH, TW, TC, TTOTAL, dup), -1);
    EXPECT_ERROR("channels[1]");
    EXPECT_EQ_INT(wire_encode_tensor(&b, 1, WIRE_FP32, x, NULL, TH, TW, TC, TTOTAL, big), -1);
    EXPECT_ERROR("channels[2]: 8");
    EXPECT_EQ_INT(wire_encode_tensor(&b, 1, WIRE_FP32, x, NULL, TH, TW, 0, TTOTAL, TCHANNELS), -1);
    EXPECT_EQ_INT(wire_encode_tensor(&b, 1, WIRE_FP32, x, NULL, 0, TW, TC, TTOTAL, TCHANNELS), -1);
    EXPECT_EQ_INT(wire_encode_tensor(&b, 1, 7, x, NULL, TH, TW, TC, TTOTAL, TCHANNELS), -1);
    EXPECT_EQ_INT(wire_encode_tensor(&b, 1, WIRE_U8, x, NULL, TH, TW, TC, TTOTAL, TCHANNELS), -1);
    EXPECT_ERROR("raw_u8");
    EXPECT_EQ_INT(wire_encode_tensor(&b, 1, WIRE_FP32, x, NULL, TH, TW, TC, TTOTAL, NULL), -1);
    EXPECT_EQ_INT(wire_encode_tensor(&b, 1, WIRE_FP32, x, NULL, 2048, 2048, 2, 2, NULL), -1);
    EXPECT_ERROR("h*w*c");
    x[4] = NAN;
    EXPECT_EQ_INT(wire_encode_tensor(&b, 1, WIRE_INT8, x, NULL, TH, TW, TC, TTOTAL, TCHANNELS), -1);
    EXPECT_ERROR("value[4]");
    float wide[2] = {-FLT_MAX, FLT_MAX};
    EXPECT_EQ_INT(wire_encode_tensor(&b, 1, WIRE_INT8, wide, NULL, 1, 1, 2, 2, NULL), -1);
    EXPECT_ERROR("scale");
    float s[2] = {1, INFINITY};
    EXPECT_EQ_INT(wire_encode_result(&b, 1, 0, 2, s), -1);
    EXPECT_ERROR("scores[1]");
    EXPECT_EQ_INT(wire_encode_result(&b, 1, 0, 0, s), -1);
    EXPECT_EQ_INT(wire_encode_result(&b, 1, 0, WIRE_MAX_CLASSES + 1, s), -1);
    EXPECT_EQ_INT(wire_encode_error(&b, 0, 1, "x"), -1);
    EXPECT_EQ_INT(wire_encode_error(&b, WIRE_E_BUSY, 1, "two\nlines"), -1);
    char longmsg[300];
    memset(longmsg, 'a', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = 0;
    EXPECT_EQ_INT(wire_encode_error(&b, WIRE_E_BUSY, 1, longmsg), -1);
    EXPECT_ERROR("299 bytes, at most 255");
    struct wire_hello m = sample_hello();
    m.role = 0;
    EXPECT_EQ_INT(wire_encode_hello(&b, &m), -1);
    m = sample_hello();
    memset(m.model, 'k', sizeof m.model); /* not terminated */
    EXPECT_EQ_INT(wire_encode_hello(&b, &m), -1);
    EXPECT_EQ_INT(b.len, 0); /* nothing appended by a refusal */
    wire_buf_free(&b);
}

static const struct test_case TESTS[] = {
    CASE(wire_hello_round_trips_and_matches_itself),
    CASE(wire_result_and_error_round_trip),
    CASE(wire_buffer_holds_several_frames_in_order),
    CASE(wire_fp32_tensor_is_exact),
    CASE(wire_u8_tensor_is_exact),
    CASE(wire_fp16_known_values),
    CASE(wire_fp16_tensor_is_within_half_precision),
    CASE(wire_int8_error_is_at_most_half_a_step_and_zero_is_exact),
    CASE(wire_quant_params_include_zero_and_handle_constant_input),
    CASE(wire_format_names_parse_back),
    CASE(wire_header_refusals_give_code_and_field),
    CASE(wire_truncated_payloads_are_refused_at_every_length),
    CASE(wire_tensor_out_of_range_fields_are_refused),
    CASE(wire_other_messages_out_of_range_fields_are_refused),
    CASE(wire_fingerprint_mismatch_names_both_models),
    CASE(wire_fingerprint_is_fnv1a_chainable_and_little_endian),
    CASE(wire_encoders_refuse_what_decoders_refuse),
};
TEST_MAIN("wire", TESTS)
