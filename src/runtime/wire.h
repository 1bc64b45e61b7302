/* wire: the frames of the split runtime's TCP protocol (device-run sends a feature map,
 * edge-serve replies with class scores): encoding into a growable buffer, decoding that checks
 * every length and field before reading, and the one quantisation training and runtime share.
 *
 *     struct wire_buf b = {0};
 *     wire_encode_tensor(&b, id, WIRE_INT8, x, NULL, h, w, c, total, channels);  // send b.data, b.len
 *     struct wire_header hd;                      // receiver: 16 bytes, then hd.payload_bytes
 *     if (wire_decode_header(hdr, WIRE_MAX_PAYLOAD, &hd) || wire_check_crc(&hd, payload)) ...
 *     struct wire_tensor t;
 *     if (wire_decode_tensor(payload, hd.payload_bytes, 0, &t) == 0) wire_tensor_dequantize(&t, out);
 *     wire_buf_free(&b);
 *
 * Everything on the wire is little-endian and written byte by byte (docs/formats.md, "Wire
 * protocol"). Decoders return 0 or a positive enum wire_error with offnas_error() set to one
 * line naming the field; they never allocate (a decoded tensor's values point into the payload).
 */
#ifndef OFFNAS_WIRE_H
#define OFFNAS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC "OFNW"
#define WIRE_VERSION 1
#define WIRE_HEADER_BYTES 16
#define WIRE_MAX_PAYLOAD (16u << 20) /* the default limit given to wire_decode_header */
#define WIRE_MAX_VALUES (4u << 20)   /* h*w*c of a tensor, when the caller gives no limit */
#define WIRE_MAX_CHANNELS 1024       /* total_channels of a tensor and hello */
#define WIRE_MAX_CLASSES 1024        /* scores of a result */
#define WIRE_MAX_TEXT 255            /* bytes of a hello's model description, an error's message */

enum wire_type { WIRE_HELLO = 1, WIRE_TENSOR = 2, WIRE_RESULT = 3, WIRE_ERROR = 4, WIRE_TYPE_COUNT };

/* How a tensor's values are sent: u8 the raw input pixels (split 0), fp32, fp16 (IEEE binary16)
 * or int8 affine per tensor (scale, zero_point). */
enum wire_format { WIRE_U8 = 1, WIRE_FP32 = 2, WIRE_FP16 = 3, WIRE_INT8 = 4, WIRE_FORMAT_COUNT };

enum wire_role { WIRE_ROLE_DEVICE = 1, WIRE_ROLE_EDGE = 2 };

/* The codes of decoder results and of ERROR messages (0 is success, never sent). */
enum wire_error {
    WIRE_E_MAGIC = 1, WIRE_E_VERSION, WIRE_E_TYPE, WIRE_E_TOO_LARGE, WIRE_E_CRC, WIRE_E_TRUNCATED,
    WIRE_E_FIELD, WIRE_E_MISMATCH /* fingerprint */, WIRE_E_STATE /* unexpected message */,
    WIRE_E_TIMEOUT, WIRE_E_BUSY, WIRE_E_INTERNAL, WIRE_E_COUNT
};

/* The 16-byte frame header, decoded. */
struct wire_header {
    int version, type;
    uint32_t payload_bytes, crc; /* crc: zlib crc32 of the payload */
};

/* HELLO: each side's model, exchanged first; the fingerprints must match. */
struct wire_hello {
    int role;             /* enum wire_role */
    uint64_t fingerprint; /* wire_fingerprint over the deployed model */
    int split, total_channels, kept, format;
    char model[WIRE_MAX_TEXT + 1]; /* NUL-terminated summary ("k3e1,k5e3; split 2; 9/24 channels; int8") */
};

/* TENSOR: the feature map at the split, the kept channels only. */
struct wire_tensor {
    uint64_t id;
    int format;         /* enum wire_format */
    float scale;        /* int8: > 0; other formats: 1 */
    int32_t zero_point; /* int8: -128..127; other formats: 0 */
    int h, w, c, total_channels;
    uint16_t channels[WIRE_MAX_CHANNELS]; /* c strictly increasing indices < total_channels */
    const uint8_t *values; /* (h, w, c) HWC, wire_format_bytes each; points into the payload */
    size_t value_bytes;
};

/* RESULT: the edge's class scores for one request. */
struct wire_result {
    uint64_t id;
    uint32_t edge_us; /* edge compute time, microseconds */
    int classes;      /* 1..WIRE_MAX_CLASSES */
    float scores[WIRE_MAX_CLASSES]; /* the first classes are set */
};

/* ERROR: why a peer refused a frame or a request. */
struct wire_error_msg {
    int code;    /* enum wire_error */
    uint64_t id; /* the request, 0 if none */
    char message[WIRE_MAX_TEXT + 1];
};

/* A growable byte buffer that encoders append frames to. Start zeroed; the buffer owns data. */
struct wire_buf {
    uint8_t *data;
    size_t len, cap;
};

/* Frees the buffer's bytes and zeroes it (a zeroed buffer is fine). */
void wire_buf_free(struct wire_buf *b);

/* The format's name ("u8", "fp32", "fp16", "int8"), or "?" for any other number. */
const char *wire_format_name(int format);

/* The enum wire_format of a name from wire_format_name, or -1 (with offnas_error) if unknown. */
int wire_format_parse(const char *name);

/* Bytes per value of the format (1, 4, 2, 1), or 0 if it is not a format. */
int wire_format_bytes(int format);

/* The code's name ("crc", "mismatch", ...), or "?" for any other number. */
const char *wire_error_name(int code);

/* ---- quantisation: the single definition training simulates and the runtime sends ---- */

/* int8 affine parameters of x[0..n): the range [min, max] widened to include 0, scale =
 * (max - min) / 255 (1 if max == min), zero_point = round(-128 - min / scale) in -128..127. */
void wire_quant_params(const float *x, size_t n, float *scale, int32_t *zero_point);

/* Replaces each x[i] by what the receiver reconstructs in that format: int8 quantise-dequantise
 * with wire_quant_params of x (error <= scale / 2, 0 stays 0), fp16 round-trip, u8 rounded and
 * clamped to 0..255, fp32 unchanged. */
void wire_fake_quant(float *x, size_t n, int format);

/* IEEE binary16 of x, round to nearest even, subnormals kept; beyond +-65504 clamps to +-65504;
 * NaN gives a quiet NaN and +-inf stays inf. */
uint16_t wire_fp16_from_float(float x);

/* The float value of a binary16 (exact). */
float wire_fp16_to_float(uint16_t h);

/* ---- encoders: append one whole frame (header + payload, CRC filled) to b. Return 0, or -1
 * with offnas_error (b unchanged) for what the decoder would refuse. ---- */

int wire_encode_hello(struct wire_buf *b, const struct wire_hello *hello);

/* x is (h, w, c) HWC of the sent channels (ignored for WIRE_U8, which sends raw_u8, also
 * (h, w, c)); channels[c] strictly increasing < total (NULL: 0..c-1, only if c == total).
 * int8 quantises with wire_quant_params of x; fp16 with wire_fp16_from_float. */
int wire_encode_tensor(struct wire_buf *b, uint64_t id, int format, const float *x,
                       const uint8_t *raw_u8, int h, int w, int c, int total,
                       const uint16_t *channels);

int wire_encode_result(struct wire_buf *b, uint64_t id, uint32_t edge_us, int classes,
                       const float *scores);

/* msg: at most WIRE_MAX_TEXT bytes (NULL: empty). */
int wire_encode_error(struct wire_buf *b, int code, uint64_t id, const char *msg);

/* ---- decoders: 0 or an enum wire_error, with a one-line offnas_error naming the field. A
 * payload is len bytes (the caller owns it); on failure *out may be partly written. ---- */

/* Decodes and checks the 16 bytes of a frame header: magic, version, type, payload length
 * (at most max_payload). Returns 0 or WIRE_E_MAGIC/VERSION/TYPE/TOO_LARGE. */
int wire_decode_header(const uint8_t hdr[WIRE_HEADER_BYTES], uint32_t max_payload,
                       struct wire_header *h);

/* Checks the payload (h->payload_bytes bytes) against the header's CRC: 0 or WIRE_E_CRC. */
int wire_check_crc(const struct wire_header *h, const uint8_t *payload);

int wire_decode_hello(const uint8_t *payload, size_t len, struct wire_hello *out);

/* max_values limits h*w*c (0: WIRE_MAX_VALUES). out->values points into payload. */
int wire_decode_tensor(const uint8_t *payload, size_t len, size_t max_values,
                       struct wire_tensor *out);

/* Copies the classes scores into out->scores (each finite). */
int wire_decode_result(const uint8_t *payload, size_t len, struct wire_result *out);

int wire_decode_error(const uint8_t *payload, size_t len, struct wire_error_msg *out);

/* Writes the decoded tensor's h*w*c values as floats to out (h, w, c) HWC: scale * (q -
 * zero_point) for u8 and int8, fp16 and fp32 converted. Returns 0. */
int wire_tensor_dequantize(const struct wire_tensor *t, float *out);

/* Compares a peer's hello with ours: 0 if the fingerprints, split, channels and format agree,
 * else WIRE_E_MISMATCH with a message stating both descriptions and fingerprints. */
int wire_hello_compare(const struct wire_hello *mine, const struct wire_hello *theirs);

/* ---- fingerprints: FNV-1a 64, chainable (start from WIRE_FINGERPRINT_SEED) ---- */

#define WIRE_FINGERPRINT_SEED 0xcbf29ce484222325ULL

/* Hash h extended by the n bytes. */
uint64_t wire_fingerprint(uint64_t h, const void *bytes, size_t n);

/* Hash h extended by the n floats as little-endian binary32 bytes (the same on every host). */
uint64_t wire_fingerprint_floats(uint64_t h, const float *x, size_t n);

#endif
