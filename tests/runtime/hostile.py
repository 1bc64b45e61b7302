#!/usr/bin/env python3
"""Hostile and broken clients against an edge-serve (tests/runtime/hostile.sh).

    hostile.py HOST:PORT RUNTIME_JSON CASE...

RUNTIME_JSON is a device-run's runtime.json of the served model (its fingerprint, split,
channels and wire format make a valid hello). Each case opens its own connection, sends what
it sends, and checks what comes back: an ERROR frame with the expected code, then the
connection closed by the server. Prints one line per case, "ok CASE: ..." or "FAIL CASE: ...";
exits 1 if any failed. Frames are built here from docs/formats.md ("Wire protocol"),
independently of src/runtime/wire.c.
"""
import json
import os
import socket
import struct
import sys
import time
import zlib

CODES = {1: "magic", 2: "version", 3: "type", 4: "too_large", 5: "crc", 6: "truncated",
         7: "field", 8: "mismatch", 9: "state", 10: "timeout", 11: "busy", 12: "internal"}
FORMATS = {"u8": 1, "fp32": 2, "fp16": 3, "int8": 4}


def frame(typ, payload, version=1, crc=None, length=None):
    crc = zlib.crc32(payload) if crc is None else crc
    length = len(payload) if length is None else length
    return b"OFNW" + struct.pack("<HHII", version, typ, length, crc) + payload


def hello_payload(m, fingerprint=None):
    fp = int(m["fingerprint"], 16) if fingerprint is None else fingerprint
    model = m["model"].encode()
    return struct.pack("<BQHHHB", 1, fp, m["split_point"], m["total_channels"], m["kept_channels"],
                       FORMATS[m["wire"]]) + struct.pack("<H", len(model)) + model


def tensor(rid, fmt, h, w, channels, total, nbytes_per=1):
    head = struct.pack("<QBfiHHHH", rid, fmt, 1.0 if fmt != 4 else 0.01, 0, h, w, len(channels), total)
    body = struct.pack("<%dH" % len(channels), *channels) + bytes(h * w * len(channels) * nbytes_per)
    return frame(2, head + body)


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def read_frame(s):
    hdr = recv_exact(s, 16)
    if len(hdr) < 16:
        return None, None
    magic, (version, typ, length, crc) = hdr[:4], struct.unpack("<HHII", hdr[4:])
    payload = recv_exact(s, length)
    return typ, payload


def closed(s, seconds=5.0):
    s.settimeout(seconds)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


class Case:
    def __init__(self, addr, m):
        self.addr, self.m = addr, m

    def connect(self):
        s = socket.create_connection(self.addr, timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def hello(self, s):
        s.sendall(frame(1, hello_payload(self.m)))
        typ, _ = read_frame(s)
        if typ != 1:
            raise AssertionError("the server did not answer a good hello with its own (type %s)" % typ)

    def expect_error(self, s, code, t0=None):
        typ, payload = read_frame(s)
        if typ != 4:
            raise AssertionError("expected ERROR %s, got %s" % (CODES[code], "nothing" if typ is None else "type %d" % typ))
        got, _rid, mlen = struct.unpack("<HQH", payload[:12])
        msg = payload[12:12 + mlen].decode(errors="replace")
        if got != code:
            raise AssertionError("expected ERROR %s, got %s: %s" % (CODES[code], CODES.get(got, got), msg))
        if not closed(s):
            raise AssertionError("the connection stayed open after ERROR %s" % CODES[code])
        took = "" if t0 is None else " after %.1f s" % (time.time() - t0)
        return "ERROR %s%s, closed: %s" % (CODES[code], took, msg)


def run_case(c, name):
    m = c.m
    s = c.connect()
    try:
        if name == "garbage":
            s.sendall(os.urandom(16) .replace(b"O", b"o") + os.urandom(48))
            return c.expect_error(s, 1)
        if name == "version":
            return (s.sendall(frame(1, hello_payload(m), version=7)), c.expect_error(s, 2))[1]
        if name == "type":
            return (s.sendall(frame(9, b"")), c.expect_error(s, 3))[1]
        if name == "too-large":
            s.sendall(b"OFNW" + struct.pack("<HHII", 1, 2, 1 << 30, 0))
            return c.expect_error(s, 4)
        if name == "crc":
            p = hello_payload(m)
            return (s.sendall(frame(1, p, crc=zlib.crc32(p) ^ 1)), c.expect_error(s, 5))[1]
        if name == "truncated-hello":
            return (s.sendall(frame(1, hello_payload(m)[:10])), c.expect_error(s, 6))[1]
        if name == "fingerprint":
            fp = int(m["fingerprint"], 16) ^ 0x10
            return (s.sendall(frame(1, hello_payload(m, fp))), c.expect_error(s, 8))[1]
        if name == "tensor-before-hello":
            return (s.sendall(tensor(1, 4, 2, 2, [0], 16)), c.expect_error(s, 9))[1]
        if name == "wrong-shape":
            c.hello(s)
            return (s.sendall(tensor(1, FORMATS[m["wire"]], 3, 3, [0], m["total_channels"] or 1)), c.expect_error(s, 7))[1]
        if name == "channel-out-of-range":
            c.hello(s)
            head = struct.pack("<QBfiHHHH", 1, 4, 0.01, 0, 1, 1, 1, 4) + struct.pack("<H", 9) + b"\0"
            return (s.sendall(frame(2, head)), c.expect_error(s, 7))[1]
        if name == "result-from-device":
            c.hello(s)
            return (s.sendall(frame(3, struct.pack("<QIH", 1, 0, 1) + struct.pack("<f", 0))), c.expect_error(s, 9))[1]
        if name == "stall":  # half a header, then nothing: the read timeout
            t0 = time.time()
            s.sendall(b"OFNW\x01\x00")
            return c.expect_error(s, 10, t0)
        if name == "stall-payload":  # a good hello, then a tensor header without its payload
            c.hello(s)
            t0 = time.time()
            s.sendall(b"OFNW" + struct.pack("<HHII", 1, 2, 5000, 0) + b"\0" * 100)
            return c.expect_error(s, 10, t0)
        if name == "disconnect-mid-frame":
            c.hello(s)
            s.sendall(b"OFNW" + struct.pack("<HHII", 1, 2, 5000, 0) + b"\0" * 100)
            s.close()
            return "sent half a tensor and closed"
        if name == "disconnect-after-hello":
            c.hello(s)
            s.close()
            return "closed after the hello"
        raise AssertionError("unknown case")
    finally:
        s.close()


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    m = json.load(open(sys.argv[2]))
    c = Case((host, int(port)), m)
    failed = 0
    for name in sys.argv[3:]:
        try:
            print("ok   %s: %s" % (name, run_case(c, name)), flush=True)
        except Exception as e:  # a failed case, reported; the others still run
            failed += 1
            print("FAIL %s: %s" % (name, e), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
