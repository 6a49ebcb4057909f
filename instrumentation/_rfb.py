"""Tell a VNC user's input from a viewer's polling, in the client -> server RFB stream.

RFC 6143: after the handshake (ProtocolVersion, the security type the client selects, the
security handshake, ClientInit) the client sends messages: SetPixelFormat (0),
SetEncodings (2), FramebufferUpdateRequest (3), KeyEvent (4), PointerEvent (5),
ClientCutText (6). Only KeyEvent, a PointerEvent that moves or changes buttons, and
ClientCutText are user input (seed 001, phase 3: "connected but idle" vs "actively using");
FramebufferUpdateRequest and SetEncodings are the viewer polling.

The classifier only reads headers (``struct.unpack_from`` on the chunk, a few bytes kept across
chunk boundaries) and skips payloads without copying them. Anything it cannot follow (another
protocol version than 3.7/3.8, encrypted security types, an unknown message type) makes it stop
classifying that connection with a reason; the bytes are relayed untouched either way.
"""

from __future__ import annotations

import struct
from typing import Final

_FIXED: Final = {0: 20, 3: 10, 4: 8, 5: 6}
"""Message type -> total length for fixed-size client messages."""

_SECURITY_NONE: Final = 1
_SECURITY_VNC_AUTH: Final = 2


class RfbClassifier:
    """Feed it the client -> server bytes; it counts user input events.

    Attributes:
        inputs: user input events so far (key, pointer move/press, cut text).
        polls: FramebufferUpdateRequest and SetEncodings messages so far.
        stopped: ``None`` while classifying, else why it stopped.
    """

    __slots__ = (
        "_buf",
        "_buttons",
        "_need",
        "_skip",
        "_stage",
        "_x",
        "_y",
        "inputs",
        "polls",
        "stopped",
    )

    def __init__(self) -> None:
        self._stage = "version"
        self._buf = b""
        self._skip = 0  # payload bytes still to skip (cut text, encodings list)
        self._need = 12
        self._buttons = -1
        self._x = self._y = -1
        self.inputs = 0
        self.polls = 0
        self.stopped: str | None = None

    def feed(self, data: bytes | memoryview) -> int:
        """Consume one chunk; return how many user input events it held."""
        if self.stopped is not None:
            return 0
        before = self.inputs
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end and self.stopped is None:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            if self._buf:  # a header split across chunks: complete it (a few bytes at most)
                take = min(self._need - len(self._buf), end - pos)
                self._buf += bytes(view[pos : pos + take])
                pos += take
                if len(self._buf) < self._need:
                    break
                used = self._step(memoryview(self._buf), 0, len(self._buf))
                if used is None:
                    break
                self._buf = b""
                continue
            used = self._step(view, pos, end)
            if used is None:  # not enough bytes for this header: keep the tail
                self._buf = bytes(view[pos:end])
                break
            pos += used
        return self.inputs - before

    def _stop(self, reason: str) -> int:
        self.stopped = reason
        return 0

    def _step(self, v: memoryview, pos: int, end: int) -> int | None:
        """Parse one unit at ``pos``; return bytes used, or None when more are needed (and
        ``self._need`` says how many in all)."""
        have = end - pos
        stage = self._stage
        if stage == "version":
            self._need = 12
            if have < 12:
                return None
            version = bytes(v[pos : pos + 12])
            if version not in (b"RFB 003.007\n", b"RFB 003.008\n"):
                return self._stop(f"unsupported ProtocolVersion {version!r}") or 12
            self._stage = "security"
            return 12
        if stage == "security":
            self._need = 1
            if have < 1:
                return None
            kind = v[pos]
            if kind == _SECURITY_VNC_AUTH:
                self._stage = "vnc-auth"
            elif kind == _SECURITY_NONE:
                self._stage = "client-init"
            else:
                return self._stop(f"security type {kind} is not followed (encrypted or unknown)")
            return 1
        if stage == "vnc-auth":
            self._need = 16
            if have < 16:
                return None
            self._stage = "client-init"
            return 16
        if stage == "client-init":
            self._need = 1
            if have < 1:
                return None
            self._stage = "messages"
            return 1
        # messages
        kind = v[pos]
        size = _FIXED.get(kind)
        if size is not None:
            self._need = size
            if have < size:
                return None
            if kind == 3:
                self.polls += 1
            elif kind == 4:
                self.inputs += 1
            elif kind == 5:
                buttons, x, y = struct.unpack_from(">BHH", v, pos + 1)
                if buttons != self._buttons or x != self._x or y != self._y:
                    if self._buttons != -1:  # the first pointer event only says where it is
                        self.inputs += 1
                    self._buttons, self._x, self._y = buttons, x, y
            return size
        if kind == 2:  # SetEncodings: header 4 bytes, then 4 per encoding
            self._need = 4
            if have < 4:
                return None
            (count,) = struct.unpack_from(">H", v, pos + 2)
            self.polls += 1
            self._skip = 4 * count
            return 4
        if kind == 6:  # ClientCutText: header 8 bytes, then the text
            self._need = 8
            if have < 8:
                return None
            (length,) = struct.unpack_from(">I", v, pos + 4)
            self.inputs += 1
            self._skip = length
            return 8
        return self._stop(f"unknown client message type {kind}") or 1
