"""Tests of payload masking, run against the pure-Python and the C implementation alike."""

from __future__ import annotations

import array
import ast
import importlib
import inspect
import os
import sys
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wskit.core
from wskit.core import masking

BytesLike = bytes | bytearray | memoryview
Mask = Callable[[BytesLike, BytesLike], bytes]

IN_CI = os.environ.get("CI", "").lower() == "true"


def _c_implementation() -> Mask:
    """Return the C apply_mask; skip without a build, but fail in CI, which has a compiler."""
    if not masking.HAS_SPEEDUPS:
        message = "wskit._speedups is not built (no C compiler when wskit was installed)"
        if IN_CI:
            pytest.fail(f"{message}, but CI=true, where the C build is required")
        pytest.skip(message)
    return masking.apply_mask


# Module scope so that hypothesis tests may use it (it returns a plain function, no state).
@pytest.fixture(params=["python", "c"], scope="module")
def apply_mask(request: pytest.FixtureRequest) -> Mask:
    """Each implementation of apply_mask in turn."""
    if request.param == "python":
        return masking.apply_mask_python
    return _c_implementation()


@pytest.fixture(scope="module")
def c_apply_mask() -> Mask:
    """The C implementation only, for comparing it with the pure one."""
    return _c_implementation()


def reference_mask(data: bytes, key: bytes) -> bytes:
    """RFC 6455 §5.3 written out byte by byte: the oracle the fast versions are checked against."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


KEY = bytes.fromhex("37fa213d")


class TestApplyMask:
    """RFC 6455 §5.3: octet i of the payload is XOR-ed with octet i MOD 4 of the masking key."""

    def test_rfc_example(self, apply_mask: Mask) -> None:
        # RFC 6455 §5.7: a single-frame masked text message containing "Hello".
        assert apply_mask(b"Hello", KEY) == bytes.fromhex("7f9f4d5158")
        assert apply_mask(bytes.fromhex("7f9f4d5158"), KEY) == b"Hello"

    def test_returns_bytes(self, apply_mask: Mask) -> None:
        for data in (b"", b"abc", bytearray(b"abcdefghij"), memoryview(b"x" * 1000)):
            assert type(apply_mask(data, KEY)) is bytes

    def test_empty(self, apply_mask: Mask) -> None:
        assert apply_mask(b"", KEY) == b""

    def test_zero_key_is_identity(self, apply_mask: Mask) -> None:
        data = os.urandom(1000)
        assert apply_mask(data, bytes(4)) == data

    @pytest.mark.parametrize("length", range(41))
    def test_small_lengths(self, apply_mask: Mask, length: int) -> None:
        # Every tail length (0-7 after 8-byte words) and key phase is covered below 41 bytes.
        data = os.urandom(length)
        assert apply_mask(data, KEY) == reference_mask(data, KEY)

    @pytest.mark.parametrize(
        "length", [511, 512, 513, 4095, 4097, 65535, 65536, 65537, (1 << 20) + 3]
    )
    def test_large_lengths(self, apply_mask: Mask, length: int) -> None:
        # Either side of the pure version's method switch and the C version's GIL release.
        data = os.urandom(length)
        assert apply_mask(data, KEY) == reference_mask(data, KEY)

    @pytest.mark.parametrize("length", [0, 1, 5, 40, 600, 100_000])
    def test_involution(self, apply_mask: Mask, length: int) -> None:
        data = os.urandom(length)
        key = os.urandom(4)
        masked = apply_mask(data, key)
        if length >= 40:
            assert masked != data
        assert apply_mask(masked, key) == data

    @pytest.mark.parametrize("length", [0, 3, 37, 600, 70_000])
    def test_input_types(self, apply_mask: Mask, length: int) -> None:
        data = os.urandom(length)
        expected = reference_mask(data, KEY)
        assert apply_mask(bytearray(data), KEY) == expected
        assert apply_mask(memoryview(data), KEY) == expected
        assert apply_mask(memoryview(bytearray(data)), KEY) == expected
        # A slice that starts mid-buffer: the key phase follows the slice, not the buffer.
        padded = b"\xaa" * 3 + data + b"\xbb" * 5
        assert apply_mask(memoryview(padded)[3 : 3 + length], KEY) == expected
        assert apply_mask(memoryview(bytearray(padded))[3 : 3 + length], KEY) == expected

    def test_input_not_modified(self, apply_mask: Mask) -> None:
        data = bytearray(os.urandom(1000))
        before = bytes(data)
        apply_mask(data, KEY)
        apply_mask(memoryview(data), KEY)
        assert data == before

    def test_key_types(self, apply_mask: Mask) -> None:
        data = os.urandom(100)
        expected = reference_mask(data, KEY)
        assert apply_mask(data, bytearray(KEY)) == expected
        assert apply_mask(data, memoryview(b"\x00" + KEY)[1:]) == expected

    def test_other_formats_count_bytes(self, apply_mask: Mask) -> None:
        # A buffer of 4-byte items is masked as its raw bytes, not item by item.
        items = array.array("I", range(10))
        raw = items.tobytes()
        assert apply_mask(memoryview(items), KEY) == reference_mask(raw, KEY)
        grid = memoryview(bytearray(raw)).cast("B", (5, 8))  # C-contiguous, two dimensions
        assert apply_mask(grid, KEY) == reference_mask(raw, KEY)

    @pytest.mark.parametrize("key", [b"", b"\x01", b"abc", b"abcde", bytes(8)])
    def test_wrong_key_length(self, apply_mask: Mask, key: bytes) -> None:
        with pytest.raises(ValueError, match="key must be 4 bytes"):
            apply_mask(b"payload", key)
        with pytest.raises(ValueError, match="key must be 4 bytes"):
            apply_mask(b"", bytearray(key))

    def test_non_contiguous_data(self, apply_mask: Mask) -> None:
        with pytest.raises(TypeError, match="data must be a C-contiguous buffer"):
            apply_mask(memoryview(b"abcdefgh")[::2], KEY)
        with pytest.raises(TypeError, match="data must be a C-contiguous buffer"):
            apply_mask(memoryview(bytearray(b"abcdef"))[::-1], KEY)

    def test_non_contiguous_key(self, apply_mask: Mask) -> None:
        with pytest.raises(TypeError, match="key must be a C-contiguous buffer"):
            apply_mask(b"data", memoryview(b"abcdefgh")[::2])

    @pytest.mark.parametrize("bad", ["text", 1234, None, [1, 2, 3, 4]])
    def test_not_bytes_like(self, apply_mask: Mask, bad: object) -> None:
        with pytest.raises(TypeError, match="data must be a bytes-like object"):
            apply_mask(bad, KEY)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="key must be a bytes-like object"):
            apply_mask(b"data", bad)  # type: ignore[arg-type]

    def test_bad_data_reported_before_bad_key(self, apply_mask: Mask) -> None:
        with pytest.raises(TypeError, match="data"):
            apply_mask("text", b"abc")  # type: ignore[arg-type]

    def test_positional_only(self, apply_mask: Mask) -> None:
        with pytest.raises(TypeError):
            apply_mask(data=b"abc", key=KEY)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            apply_mask(b"abc")  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            apply_mask(b"abc", KEY, KEY)  # type: ignore[call-arg]


class TestSpeedups:
    """RFC 6455 §5.3 masking: the C speed-up is a drop-in twin of the pure-Python function."""

    @given(data=st.binary(max_size=2048), key=st.binary(min_size=4, max_size=4))
    def test_c_matches_python(self, c_apply_mask: Mask, data: bytes, key: bytes) -> None:
        assert c_apply_mask(data, key) == masking.apply_mask_python(data, key)

    @given(
        data=st.binary(max_size=300),
        start=st.integers(0, 300),
        stop=st.integers(0, 300),
        key=st.binary(min_size=4, max_size=4),
    )
    def test_c_matches_python_on_slices(
        self, c_apply_mask: Mask, data: bytes, start: int, stop: int, key: bytes
    ) -> None:
        view = memoryview(bytearray(data))[start:stop]
        assert c_apply_mask(view, key) == masking.apply_mask_python(view, key)

    @given(key=st.binary(max_size=8).filter(lambda k: len(k) != 4))
    def test_same_error_for_bad_keys(self, c_apply_mask: Mask, key: bytes) -> None:
        for impl in (c_apply_mask, masking.apply_mask_python):
            with pytest.raises(ValueError) as info:
                impl(b"data", key)
            assert str(info.value) == f"key must be 4 bytes, got {len(key)}"

    def test_same_signature(self, c_apply_mask: Mask) -> None:
        c_params = inspect.signature(c_apply_mask).parameters
        py_params = inspect.signature(masking.apply_mask_python).parameters
        assert [(p.name, p.kind) for p in c_params.values()] == [
            (p.name, p.kind) for p in py_params.values()
        ]

    def test_c_is_the_default_when_built(self, c_apply_mask: Mask) -> None:
        assert masking.HAS_SPEEDUPS
        assert masking.apply_mask is c_apply_mask
        assert masking.apply_mask.__module__ == "wskit._speedups"

    def test_pure_is_the_default_without_build(self) -> None:
        if masking.HAS_SPEEDUPS:
            assert masking.apply_mask is not masking.apply_mask_python
        else:
            assert masking.apply_mask is masking.apply_mask_python


Generate = Callable[[], bytes]


@pytest.fixture(params=["python", "c"])
def generate_mask(request: pytest.FixtureRequest) -> Generate:
    """Each implementation of generate_mask in turn: the pure pool and the C mask_key."""
    if request.param == "python":
        return masking.generate_mask_python
    _c_implementation()
    assert masking.speedups is not None
    return masking.speedups.mask_key  # type: ignore[no-any-return]


class TestGenerateMask:
    """RFC 6455 §5.3: each frame's masking key is 4 fresh, unpredictable bytes."""

    def test_four_bytes(self, generate_mask: Generate) -> None:
        key = generate_mask()
        assert type(key) is bytes
        assert len(key) == 4

    def test_differs_between_calls(self, generate_mask: Generate) -> None:
        # 100 draws of 32 random bits collide with probability about 1e-6.
        keys = {generate_mask() for _ in range(100)}
        assert len(keys) == 100

    def test_usable_as_key(self, apply_mask: Mask, generate_mask: Generate) -> None:
        key = generate_mask()
        assert apply_mask(apply_mask(b"round trip", key), key) == b"round trip"

    def test_pools_are_refilled_with_fresh_bytes(self, generate_mask: Generate) -> None:
        # Both pools hold at most 1,024 keys (4 KiB in Python, 1 KiB in C): across 3,072 keys
        # each pool-sized run differs from the next, so no refill hands out old bytes again.
        keys = b"".join(generate_mask() for _ in range(3 * 1024))
        for size in (1024, 4096):
            runs = [keys[i : i + size] for i in range(0, 2 * size, size)]
            assert runs[0] != runs[1]
        assert bytes(16) not in keys  # a pool forgotten (zeroed) and never refilled

    def test_the_default_is_the_compiled_one_when_built(self) -> None:
        if masking.HAS_SPEEDUPS:
            assert masking.speedups is not None
            assert masking.generate_mask is masking.speedups.mask_key
        else:
            assert masking.generate_mask is masking.generate_mask_python


class TestPythonKeyPool:
    """The pure generate_mask cuts its keys from one os.urandom call per 1,024 keys."""

    def test_refill_boundary(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[int] = []

        def urandom(n: int) -> bytes:
            calls.append(n)
            # Pool number k holds the 4-byte big-endian numbers k * 1024 + 0 .. 1023.
            base = (len(calls) - 1) * 1024
            return b"".join((base + i).to_bytes(4, "big") for i in range(n // 4))

        monkeypatch.setattr(masking.os, "urandom", urandom)
        monkeypatch.setattr(masking, "_keys", iter(()))  # an empty pool, as after a fork
        keys = [masking.generate_mask_python() for _ in range(2 * 1024 + 1)]
        assert calls == [4096, 4096, 4096]  # at key 0, key 1,024 and key 2,048: no sooner
        assert [int.from_bytes(k, "big") for k in keys] == list(range(2 * 1024 + 1))


class TestSansIO:
    """The core stays sans-I/O (docs/architecture.md, rule 1); §5.3 masking needs no I/O."""

    def test_no_io_imports(self) -> None:
        tree = ast.parse(inspect.getsource(masking))
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"asyncio", "socket", "time", "threading"}

    def test_no_environment_reads(self) -> None:
        # docs/architecture.md, Rules: no hidden switches read from the environment at import.
        source = inspect.getsource(masking)
        assert "environ" not in source
        assert "getenv" not in source

    def test_works_without_speedups(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "wskit._speedups", None)  # makes the import fail
        monkeypatch.delitem(sys.modules, masking.__name__)
        # The re-import rebinds the package attribute; this restores it afterwards.
        monkeypatch.setattr(wskit.core, "masking", masking)
        fresh = importlib.import_module(masking.__name__)
        assert fresh is not masking
        assert fresh.HAS_SPEEDUPS is False
        assert fresh.apply_mask is fresh.apply_mask_python
        assert fresh.apply_mask(b"Hello", KEY) == bytes.fromhex("7f9f4d5158")
