/* fuzz_wire: the frame decoders of the split runtime (src/runtime/wire.h). The input is a
 * stream of frames: each header is decoded, the CRC checked (a wrong CRC is noted but the
 * payload is still decoded, so the fuzzer gets past it), the payload decoded by type and a
 * tensor dequantized. What decodes is encoded again, and the new frame must decode (CRC
 * included) to the same fields; anything else aborts: a bug. */
#include "fuzz_lib.h"

#include "common.h"
#include "wire.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_VALUES (1u << 16) /* larger tensors are refused (time per input) */

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_wire: %s (%s)\n", what, offnas_last_error());
    abort();
}

/* The one frame at the start of b: its header (checked, CRC included) and payload. */
static const uint8_t *reframe(const struct wire_buf *b, int type, struct wire_header *h)
{
    if (b->len < WIRE_HEADER_BYTES || wire_decode_header(b->data, WIRE_MAX_PAYLOAD, h) ||
        h->type != type || b->len != WIRE_HEADER_BYTES + h->payload_bytes)
        fail("re-encoded header does not decode");
    if (wire_check_crc(h, b->data + WIRE_HEADER_BYTES))
        fail("re-encoded crc");
    return b->data + WIRE_HEADER_BYTES;
}

static void hello(const uint8_t *p, size_t n, struct wire_buf *b)
{
    struct wire_hello m, m2;
    if (fuzz_step("wire_decode_hello", wire_decode_hello(p, n, &m)))
        return;
    if (wire_encode_hello(b, &m))
        fail("hello decoded but does not encode");
    struct wire_header h;
    p = reframe(b, WIRE_HELLO, &h);
    if (wire_decode_hello(p, h.payload_bytes, &m2) || m2.role != m.role ||
        strcmp(m2.model, m.model) != 0 || wire_hello_compare(&m, &m2))
        fail("hello round trip");
}

static void tensor(const uint8_t *p, size_t n, struct wire_buf *b)
{
    static struct wire_tensor t, t2;
    if (fuzz_step("wire_decode_tensor", wire_decode_tensor(p, n, FUZZ_MAX_VALUES, &t)))
        return;
    size_t count = (size_t)t.h * t.w * t.c;
    float *x = malloc(count * sizeof *x), *y = malloc(count * sizeof *y);
    if (!x || !y)
        abort();
    wire_tensor_dequantize(&t, x);
    for (size_t i = 0; i < count; i++)
        if (!isfinite(x[i]))
            fail("dequantized value not finite");
    if (wire_encode_tensor(b, t.id, t.format, x, t.values, t.h, t.w, t.c, t.total_channels,
                           t.channels)) {
        /* an int8 scale within a rounding of the limit may re-quantise one ulp above it */
        if (t.format == WIRE_INT8 && (double)t.scale * 255.0 > FLT_MAX / 2)
            goto done;
        fail("tensor decoded but does not encode");
    }
    struct wire_header h;
    p = reframe(b, WIRE_TENSOR, &h);
    if (wire_decode_tensor(p, h.payload_bytes, FUZZ_MAX_VALUES, &t2))
        fail("re-encoded tensor does not decode");
    if (t2.id != t.id || t2.format != t.format || t2.h != t.h || t2.w != t.w || t2.c != t.c ||
        t2.total_channels != t.total_channels ||
        memcmp(t2.channels, t.channels, (size_t)t.c * sizeof t.channels[0]) != 0 ||
        t2.value_bytes != t.value_bytes)
        fail("tensor round trip: fields");
    wire_tensor_dequantize(&t2, y);
    if (t.format == WIRE_INT8) {
        /* re-quantised with new parameters: within half a step of the new scale */
        for (size_t i = 0; i < count; i++)
            if (fabs((double)y[i] - x[i]) > (0.5 + 1e-4) * t2.scale + 1e-30)
                fail("tensor round trip: int8 value beyond scale/2");
    } else if (memcmp(t2.values, t.values, t.value_bytes) != 0 ||
               memcmp(x, y, count * sizeof *x) != 0 || t2.scale != t.scale ||
               t2.zero_point != t.zero_point) {
        fail("tensor round trip: values");
    }
done:
    free(x);
    free(y);
}

static void result(const uint8_t *p, size_t n, struct wire_buf *b)
{
    static struct wire_result r, r2;
    if (fuzz_step("wire_decode_result", wire_decode_result(p, n, &r)))
        return;
    if (wire_encode_result(b, r.id, r.edge_us, r.classes, r.scores))
        fail("result decoded but does not encode");
    struct wire_header h;
    p = reframe(b, WIRE_RESULT, &h);
    if (wire_decode_result(p, h.payload_bytes, &r2) || r2.id != r.id || r2.edge_us != r.edge_us ||
        r2.classes != r.classes || memcmp(r2.scores, r.scores, (size_t)r.classes * 4) != 0)
        fail("result round trip");
}

static void error_msg(const uint8_t *p, size_t n, struct wire_buf *b)
{
    struct wire_error_msg e, e2;
    if (fuzz_step("wire_decode_error", wire_decode_error(p, n, &e)))
        return;
    if (wire_encode_error(b, e.code, e.id, e.message))
        fail("error decoded but does not encode");
    struct wire_header h;
    p = reframe(b, WIRE_ERROR, &h);
    if (wire_decode_error(p, h.payload_bytes, &e2) || e2.code != e.code || e2.id != e.id ||
        strcmp(e2.message, e.message) != 0)
        fail("error round trip");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    struct wire_buf b = {0};
    while (size >= WIRE_HEADER_BYTES) {
        struct wire_header h;
        if (fuzz_step("wire_decode_header", wire_decode_header(data, WIRE_MAX_PAYLOAD, &h)))
            break;
        const uint8_t *p = data + WIRE_HEADER_BYTES;
        size_t avail = size - WIRE_HEADER_BYTES;
        /* a short last frame: decode what arrived (the decoders see a truncated payload) */
        size_t n = h.payload_bytes <= avail ? h.payload_bytes : avail;
        if (n == h.payload_bytes)
            fuzz_step("wire_check_crc", wire_check_crc(&h, p));
        b.len = 0;
        switch (h.type) {
        case WIRE_HELLO: hello(p, n, &b); break;
        case WIRE_TENSOR: tensor(p, n, &b); break;
        case WIRE_RESULT: result(p, n, &b); break;
        default: error_msg(p, n, &b); break;
        }
        data = p + n;
        size = avail - n;
    }
    wire_buf_free(&b);
    return 0;
}
