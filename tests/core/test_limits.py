"""``wskit.core.limits``: every limit and timeout, each default written once (docs/architecture.md
rule 6)."""

from __future__ import annotations

import pytest

from wskit.core import limits
from wskit.core.errors import ConnectFailed, InvalidHandshake
from wskit.core.extensions import Extension
from wskit.core.limits import Limits


def test_defaults_are_the_constants() -> None:
    got = Limits()
    assert got.max_message_size == limits.MAX_MESSAGE_SIZE
    assert got.max_queue == limits.MAX_QUEUE
    assert got.write_limit == limits.WRITE_LIMIT
    assert (got.open_timeout, got.close_timeout) == (limits.OPEN_TIMEOUT, limits.CLOSE_TIMEOUT)
    assert (got.ping_interval, got.ping_timeout) == (limits.PING_INTERVAL, limits.PING_TIMEOUT)
    assert (got.max_line_length, got.max_headers, got.max_header_bytes) == (
        limits.MAX_LINE_LENGTH, limits.MAX_HEADERS, limits.MAX_HEADER_BYTES)
    assert "max_queue=32" in repr(got)


@pytest.mark.parametrize("kwargs", [{"max_queue": 0}, {"max_message_size": 0}])
def test_nonsense_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Limits(**kwargs)


def test_an_extension_shares_nothing_by_default() -> None:
    class Identity(Extension):
        def encode(self, payload: bytes | bytearray | memoryview,
                   compress: bool = True) -> tuple[bytes, bool]:
            return bytes(payload), False

        def decode(self, payload: bytes | bytearray | memoryview, rsv1: bool, fin: bool,
                   max_length: int) -> bytes | bytearray | memoryview:
            return payload

    assert Identity().shared_encoding() is None


def test_handshake_errors() -> None:
    refused = InvalidHandshake("forbidden", status=403, headers=[("X", "y")])
    assert (refused.reason, refused.status, refused.headers) == ("forbidden", 403, [("X", "y")])
    failed = ConnectFailed("no route", transient=True)
    assert failed.transient and isinstance(failed, ConnectionError)
