"""The RFB classifier on byte streams split at every possible point."""

from __future__ import annotations

import struct

from lastactive.instrumentation._rfb import RfbClassifier

HANDSHAKE = b"RFB 003.008\n" + bytes([2]) + b"\x11" * 16 + b"\x01"  # VNC auth, shared
SET_ENCODINGS = struct.pack(">BBH3i", 2, 0, 3, 0, 1, -239)
POLL = struct.pack(">BBHHHH", 3, 1, 0, 0, 800, 600)
PIXEL = struct.pack(">BxxxBBBBHHHBBBxxx", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
KEY = struct.pack(">BBxxI", 4, 1, 0x61)
POINTER = struct.pack(">BBHH", 5, 0, 10, 20)
MOVE = struct.pack(">BBHH", 5, 0, 11, 20)
CUT = struct.pack(">BxxxI", 6, 5) + b"hello"


def feed_split(stream: bytes, size: int) -> RfbClassifier:
    c = RfbClassifier()
    for i in range(0, len(stream), size):
        c.feed(stream[i : i + size])
    return c


def test_polling_is_not_input_and_input_is_counted_at_any_split() -> None:
    viewer = HANDSHAKE + PIXEL + SET_ENCODINGS + POLL * 5 + POINTER + POINTER
    user = viewer + KEY + KEY + MOVE + CUT + POLL
    for size in (1, 2, 3, 5, 7, 64, 4096):
        c = feed_split(viewer, size)
        assert (c.inputs, c.polls, c.stopped) == (0, 6, None), size
        c = feed_split(user, size)
        assert (c.inputs, c.polls, c.stopped) == (4, 7, None), size


def test_garbage_and_unknowns_stop_classifying_without_raising() -> None:
    for stream, says in (
        (b"GET / HTTP/1.1\r\n\r\n", "ProtocolVersion"),
        (b"RFB 003.008\n" + bytes([19]), "security type 19"),
        (HANDSHAKE + bytes([250]) + b"\x00" * 40, "message type 250"),
    ):
        c = RfbClassifier()
        assert c.feed(stream) == 0
        assert c.stopped is not None and says in c.stopped
        assert c.feed(KEY) == 0  # stays stopped
