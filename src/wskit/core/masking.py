"""Frame payload masking (RFC 6455 §5.3): the XOR, random keys, the one import of the C speed-up."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

__all__ = [
    "HAS_SPEEDUPS",
    "apply_mask",
    "apply_mask_python",
    "generate_mask",
    "generate_mask_python",
    "speedups",
]

# Measured on CPython 3.11 x86-64: one big-integer XOR wins below about 512 bytes, where its
# fixed cost is lowest; above it, four strided bytes.translate passes win (about 1.6x at 64 KiB),
# because the integer conversions cost more per byte than translate.
_TRANSLATE_MIN = 512
# Larger payloads are translated in chunks of this many bytes (a multiple of 4, so every chunk
# starts at key octet 0): the strided passes then stay in the CPU cache, 1.5x faster at 1 MiB.
_CHUNK = 64 * 1024

_IDENTITY = int.from_bytes(bytes(range(256)), "little")
# _XOR_TABLES[k] maps byte b to b ^ k; built on first use, 256 bytes each.
_XOR_TABLES: list[bytes | None] = [None] * 256


def _xor_table(k: int) -> bytes:
    table = _XOR_TABLES[k]
    if table is None:
        # 256 copies of k XOR-ed with 0..255 in one integer operation, not a byte loop.
        table = (_IDENTITY ^ int.from_bytes(bytes((k,)) * 256, "little")).to_bytes(256, "little")
        _XOR_TABLES[k] = table
    return table


def _byte_view(obj: object, name: str) -> memoryview:
    # The same checks and messages as the C version, so both implementations fail alike.
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be a bytes-like object, not '{type(obj).__name__}'") from None
    if not view.c_contiguous:
        raise TypeError(f"{name} must be a C-contiguous buffer")
    # Flat unsigned bytes, so len() counts bytes whatever the exporter's format or shape.
    return view.cast("B")


def apply_mask_python(
    data: bytes | bytearray | memoryview, key: bytes | bytearray | memoryview, /
) -> bytes:
    """Return ``data`` XOR-ed with the 4-byte masking ``key`` repeated (RFC 6455 §5.3).

    ``data`` is any C-contiguous bytes-like object (``TypeError`` otherwise); ``key`` must be
    exactly 4 bytes (``ValueError`` otherwise). Masking twice with the same key restores the input.
    """
    # Checked in the C version's order (data, key, key length), so bad calls fail alike.
    if type(data) is not bytes:
        data = _byte_view(data, "data")
    if type(key) is not bytes:
        key = _byte_view(key, "key").tobytes()
    if len(key) != 4:
        raise ValueError(f"key must be 4 bytes, got {len(key)}")
    n = len(data)
    if n < _TRANSLATE_MIN:
        # RFC 6455 §5.3: octet i of the payload is XOR-ed with octet i mod 4 of the key.
        q, r = divmod(n, 4)
        mask = int.from_bytes(key * q + key[:r], "little")
        return (int.from_bytes(data, "little") ^ mask).to_bytes(n, "little")
    tables = (
        _xor_table(key[0]),
        _xor_table(key[1]),
        _xor_table(key[2]),
        _xor_table(key[3]),
    )
    if n <= _CHUNK:
        return bytes(_translate_in_place(bytearray(data), tables))
    view = memoryview(data)
    chunks = [
        _translate_in_place(bytearray(view[start : start + _CHUNK]), tables)
        for start in range(0, n, _CHUNK)
    ]
    return b"".join(chunks)


def _translate_in_place(chunk: bytearray, tables: tuple[bytes, bytes, bytes, bytes]) -> bytearray:
    # RFC 6455 §5.3 one key octet at a time: every 4th byte shares a key octet, so each strided
    # slice is one translate. Slicing a bytearray is faster than slicing bytes.
    t0, t1, t2, t3 = tables
    chunk[0::4] = chunk[0::4].translate(t0)
    chunk[1::4] = chunk[1::4].translate(t1)
    chunk[2::4] = chunk[2::4].translate(t2)
    chunk[3::4] = chunk[3::4].translate(t3)
    return chunk


# Keys are cut from a pool of CSPRNG bytes: one getrandom() per 1024 keys instead of one per
# frame (0.4 µs each, a tenth of a client's cost per message). A list iterator hands each key
# out once even across threads; a forked child drops the pool it inherited.
_POOL_BYTES = 4096
_keys: Iterator[bytes] = iter(())


def _refill() -> bytes:
    global _keys
    pool = os.urandom(_POOL_BYTES)
    _keys = iter([pool[i : i + 4] for i in range(4, _POOL_BYTES, 4)])
    return pool[:4]


def _forget_pool() -> None:
    global _keys
    _keys = iter(())


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_pool)


def generate_mask_python() -> bytes:
    """Return a fresh masking key: 4 bytes from the OS's CSPRNG (RFC 6455 §5.3, §10.3)."""
    # §5.3: the key MUST be unpredictable, so never the random module.
    try:
        return next(_keys)
    except StopIteration:
        return _refill()


HAS_SPEEDUPS: bool
#: The compiled module when built: imported here only, for every speed-up (frames.py too).
speedups: ModuleType | None
try:
    import wskit._speedups as _compiled
except ImportError:  # not built (no compiler at install time): the pure versions do the work
    speedups = None
    apply_mask = apply_mask_python
    generate_mask = generate_mask_python
    HAS_SPEEDUPS = False
else:
    speedups = _compiled
    apply_mask = _compiled.apply_mask
    # The same per-frame source as the C build_masked_frame: a per-thread pool of getrandom()
    # bytes, reset in a forked child (and one Python call less per masked control frame).
    generate_mask = _compiled.mask_key
    HAS_SPEEDUPS = True
