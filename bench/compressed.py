"""Load with permessage-deflate negotiated: JSON-like messages, frame counting, wire bytes."""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

from bench.common import OP_TEXT, Scenario

# Compressed replies differ in length from message to message (context takeover makes the
# same text compress differently each time), so the generator cannot divide received bytes
# by a reply length as it does without compression: it walks the frame headers instead.

#: Distinct messages a scenario cycles through. 1,000 of 500 B are 500 KB, far beyond any
#: library's 32 KiB window, so a repeat never compresses against its earlier copy.
DISTINCT = 1000
#: The client's offer, as browsers make it: the server may limit the client's window.
OFFER = "permessage-deflate; client_max_window_bits"
#: The client masks with a zero key, which leaves the payload as it is (RFC 6455 §5.3 lets a
#: server check nothing about the key), so the generator spends no CPU on masking.
ZERO_KEY = b"\x00\x00\x00\x00"
#: Bytes of the first replies kept to check the first message.
KEEP = 65536

_WORDS = ("alpha", "beta", "gamma", "delta", "price", "volume", "user", "room", "hello",
          "status", "online", "update", "ticker", "order", "fill", "quote")


def json_messages(size: int, n: int = DISTINCT, prefix: str = "") -> list[bytes]:
    """n distinct JSON texts of about `size` bytes: a feed of trades, as a market-data app sends.

    Keys repeat from message to message (what context takeover wins on); numbers do not.
    """
    rng = random.Random(7692 + size)
    out = []
    for seq in range(n):
        trades: list[dict[str, Any]] = []
        text = ""
        while len(text) < size:
            trades.append({
                "id": rng.randrange(10**9),
                "sym": rng.choice(_WORDS).upper() + str(rng.randrange(100)),
                "px": round(rng.uniform(1, 1000), 2), "qty": rng.randrange(1, 5000),
                "side": rng.choice(("buy", "sell")),
                "ts": 1764600000000 + seq * 13 + rng.randrange(9),
            })
            text = prefix + json.dumps({"type": "trades", "seq": seq, "data": trades},
                                       separators=(",", ":"))
        out.append(text.encode())
    return out


def negotiated(head: bytes) -> dict[str, int | bool] | None:
    """The permessage-deflate parameters of a 101 response head, or None if declined."""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() != "sec-websocket-extensions":
            continue
        ext, *params = (p.strip() for p in value.split(";"))
        if ext != "permessage-deflate":
            return None
        out: dict[str, int | bool] = {"server_max_window_bits": 15, "client_max_window_bits": 15}
        for p in params:
            key, _, val = p.partition("=")
            out[key.strip()] = int(val.strip().strip('"')) if val else True
        return out
    return None


def _header(opcode: int, n: int, rsv1: bool) -> bytes:
    b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        return bytes((b0, 0x80 | n))
    if n < 65536:
        return bytes((b0, 0x80 | 126)) + n.to_bytes(2, "big")
    return bytes((b0, 0x80 | 127)) + n.to_bytes(8, "big")


def client_frames(messages: list[bytes], window_bits: int) -> list[bytes]:
    """Masked (zero-key) compressed text frames, each compressed on its own.

    A message compressed without reference to earlier ones is valid under context takeover
    too (RFC 7692 §7.2.1: the sender may use the window, it need not), so the frames can be
    replayed in any order and on any connection: the generator builds them once.
    """
    frames = []
    for m in messages:
        c = zlib.compressobj(1, zlib.DEFLATED, -max(window_bits, 9))
        data = (c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
        frames.append(_header(OP_TEXT, len(data), True) + ZERO_KEY + data)
    return frames


class FrameCounter:
    """Counts the server's frames in a byte stream; keeps the first frame for checking."""

    __slots__ = ("_head", "_skip", "first", "frames", "rx")

    def __init__(self) -> None:
        self._head = b""  # an incomplete header carried over between reads
        self._skip = 0  # payload bytes of the current frame still to come
        self.frames = 0
        self.rx = 0
        self.first = bytearray()

    def feed(self, data: bytes) -> int:
        """Consume data; return how many frames it completed."""
        self.rx += len(data)
        if len(self.first) < KEEP:
            self.first += data[: KEEP - len(self.first)]
        if self._head:
            data = self._head + data
            self._head = b""
        pos, end, done, skip = 0, len(data), 0, self._skip
        while True:
            if skip:
                if end - pos < skip:
                    self._skip = skip - (end - pos)
                    self.frames += done
                    return done
                pos += skip
                skip = 0
                done += 1
            if pos >= end:
                break
            if end - pos < 2:
                self._head = data[pos:]
                break
            n = data[pos + 1] & 0x7F
            if n < 126:
                pos += 2
            elif n == 126:
                if end - pos < 4:
                    self._head = data[pos:]
                    break
                n = int.from_bytes(data[pos + 2 : pos + 4], "big")
                pos += 4
            else:
                if end - pos < 10:
                    self._head = data[pos:]
                    break
                n = int.from_bytes(data[pos + 2 : pos + 10], "big")
                pos += 10
            if n == 0:
                done += 1
            else:
                skip = n
        self._skip = 0
        self.frames += done
        return done


def first_message(stream: bytes, params: dict[str, int | bool]) -> tuple[int, bytes] | None:
    """(opcode, inflated payload) of the first frame in `stream`, or None if incomplete."""
    if len(stream) < 2:
        return None
    b0, n = stream[0], stream[1] & 0x7F
    pos = 2
    if n == 126:
        n, pos = int.from_bytes(stream[2:4], "big"), 4
    elif n == 127:
        n, pos = int.from_bytes(stream[2:10], "big"), 10
    if len(stream) < pos + n:
        return None
    payload = stream[pos : pos + n]
    if b0 & 0x40:
        bits = int(params.get("server_max_window_bits", 15))
        d = zlib.decompressobj(wbits=-bits)
        payload = d.decompress(payload + b"\x00\x00\xff\xff")
    return b0 & 0x0F, payload


def check_first(counter: FrameCounter, expected: bytes,
                params: dict[str, int | bool]) -> str | None:
    """None if the first frame received is `expected` as text, else what is wrong."""
    got = first_message(bytes(counter.first), params)
    if got is None:
        return "first reply incomplete"
    opcode, payload = got
    if opcode != OP_TEXT or payload != expected:
        return f"reply mismatch: opcode {opcode}, {payload[:40]!r}"
    return None


def scenario_messages(s: Scenario) -> list[bytes]:
    prefix = "pub:" if s.kind == "fanout" else ""
    return json_messages(s.size, prefix=prefix)


# The choice of compressor: `python -m bench.compressed` prints, for each deflate library,
# level, memLevel and window, the bytes per message of the z_ scenarios' feeds (compressed
# as a server does: one stream, context takeover, a sync flush per message) and, with
# --callgrind, the instructions per message (valgrind: two runs of different lengths, the
# difference divided by the extra messages, so start-up and the feed's creation cancel out).

#: (library, level, memLevel, window bits): the server's defaults and their alternatives.
CHOICES = [
    ("isal", 1, 5, 12), ("isal", 2, 5, 12), ("isal", 3, 5, 12), ("isal", 2, 5, 15),
    ("zlib", 1, 5, 12), ("zlib", 5, 5, 12), ("zlib", 6, 5, 12), ("zlib", 6, 8, 12),
    ("zlib", 6, 5, 15),
    ("zlib-ng", 1, 5, 12), ("zlib-ng", 2, 5, 12), ("zlib-ng", 3, 5, 12), ("zlib-ng", 4, 5, 12),
    ("zlib-ng", 5, 5, 12), ("zlib-ng", 6, 5, 12), ("zlib-ng", 9, 5, 12), ("zlib-ng", 5, 5, 15),
]


def _compressor(library: str, level: int, mem_level: int, bits: int) -> Any:
    if library == "isal":
        from isal import isal_zlib
        return isal_zlib.compressobj(level, isal_zlib.DEFLATED, -bits, mem_level)
    if library == "zlib-ng":
        from zlib_ng import zlib_ng
        return zlib_ng.compressobj(level, zlib_ng.DEFLATED, -bits, mem_level)
    return zlib.compressobj(level, zlib.DEFLATED, -bits, mem_level)


def compressed_size(messages: list[bytes], choice: tuple[str, int, int, int], n: int) -> float:
    """Payload bytes per message of the first n messages, as one server stream compresses them."""
    c = _compressor(*choice)
    total = 0
    for i in range(n):
        total += len(c.compress(messages[i % len(messages)]) + c.flush(zlib.Z_SYNC_FLUSH)) - 4
    return total / n


def _instructions(size: int, choice: tuple[str, int, int, int], n: int) -> int:
    import subprocess
    import sys
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/cg"
        code = (f"from bench.compressed import json_messages, compressed_size; "
                f"compressed_size(json_messages({size}), {choice!r}, {n})")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, "-c", code], check=True, capture_output=True)
        with open(out) as lines:
            for line in lines:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    raise RuntimeError("no totals in the callgrind output")


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser(description="bytes (and instructions) per message of each "
                                 "compressor choice on the z_ scenarios' feeds")
    ap.add_argument("--callgrind", action="store_true", help="count instructions too (slow)")
    ap.add_argument("--sizes", default="500,4096")
    args = ap.parse_args()
    for size in map(int, args.sizes.split(",")):
        messages = json_messages(size)
        for choice in CHOICES:
            try:
                line = f"{size:5d} B  {choice[0]:8s} level {choice[1]} mem {choice[2]} " \
                       f"wbits {choice[3]}: {compressed_size(messages, choice, 700):7.1f} B/msg"
            except ImportError:
                continue
            if args.callgrind:
                ir = (_instructions(size, choice, 700) - _instructions(size, choice, 100)) / 600
                line += f"  {ir / 1000:6.1f}k Ir/msg"
            print(line, flush=True)


if __name__ == "__main__":
    main()
