"""The Redis backplane's pieces without a server: URLs and the wire format between workers."""

from __future__ import annotations

import pytest

from wskit.hub.redis import HEADER, decode, encode, parse_url

ORIGIN = b"\x01\x02\x03\x04\x05\x06\x07\x08"


class TestWireFormat:
    def test_text_and_binary_cross_unchanged(self) -> None:
        for message in ("héllo", "", b"\x00\xff" * 10, b""):
            data = encode(ORIGIN, message)
            assert len(data) == HEADER + len(
                message.encode() if isinstance(message, str) else message)
            assert decode(data) == (ORIGIN, message)

    def test_kind_and_version_are_checked(self) -> None:
        assert encode(ORIGIN, "a")[0] == 0x11 and encode(ORIGIN, b"a")[0] == 0x12
        for bad in (b"", b"\x11" + ORIGIN[:3], b"\x21" + ORIGIN, b"\x13" + ORIGIN,
                    b"\x11" + ORIGIN + b"\xff"):
            with pytest.raises(ValueError):
                decode(bad)


class TestUrls:
    def test_one_server(self) -> None:
        target = parse_url("redis://:s%40cret@cache:6380/2")
        assert (target.nodes, target.cluster, target.db) == ([("cache", 6380)], False, 2)
        assert (target.username, target.password, target.tls) == (None, "s@cret", False)
        assert parse_url("rediss://u:p@[::1]/0").nodes == [("::1", 6379)]
        assert parse_url("rediss://u:p@[::1]/0").tls

    def test_cluster(self) -> None:
        target = parse_url("redis://a:7000,b:7001,[::1]:7002")
        assert target.cluster and target.nodes == [("a", 7000), ("b", 7001), ("::1", 7002)]
        assert parse_url("redis+cluster://seed:7000").cluster
        assert "db" not in parse_url("redis+cluster://seed").connection_kwargs()

    @pytest.mark.parametrize("url", ["http://x", "redis://", "redis://a,b/3",
                                     "redis://a:notaport"])
    def test_bad_urls(self, url: str) -> None:
        with pytest.raises(ValueError):
            parse_url(url)
