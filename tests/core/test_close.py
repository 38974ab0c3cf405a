"""The close-code table of RFC 6455 §7.4.1 and what ``Connection`` derives from a close:
clean or not, which error, what the transport does next (§7.1.1, §7.1.5, §7.1.7)."""

from __future__ import annotations

import pytest

from wskit.core.close import CloseCode, is_clean, valid_on_wire
from wskit.core.connection import Connection, Ending, Role, State
from wskit.core.errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidArgument,
    InvalidState,
    ProtocolError,
)

PEER_KEY = bytes.fromhex("a1b2c3d4")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame as a client peer sends it to our server (RFC 6455 §5.2, §5.3)."""
    assert len(payload) < 126
    masked = bytes(b ^ PEER_KEY[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + PEER_KEY + masked


def server_frame(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    return bytes((0x80 | opcode, len(payload))) + payload


class TestTable:
    """RFC 6455 §7.4.1 and §7.4.2, and the IANA registry for 1012-1015."""

    def test_members_are_the_rfc_numbers(self) -> None:
        assert CloseCode.NORMAL_CLOSURE == 1000
        assert CloseCode.GOING_AWAY == 1001
        assert CloseCode.PROTOCOL_ERROR == 1002
        assert CloseCode.INVALID_PAYLOAD == 1007
        assert CloseCode.MESSAGE_TOO_BIG == 1009
        assert CloseCode.INTERNAL_ERROR == 1011
        assert CloseCode.TRY_AGAIN_LATER == 1013
        assert 1004 not in {int(c) for c in CloseCode}  # reserved, no meaning

    @pytest.mark.parametrize("code", [1004, 1005, 1006, 1015, 999, 1016, 2999, 5000])
    def test_never_on_the_wire(self, code: int) -> None:
        assert not valid_on_wire(code)

    @pytest.mark.parametrize("code", [1000, 1003, 1007, 1011, 1014, 3000, 4999])
    def test_on_the_wire(self, code: int) -> None:
        assert valid_on_wire(code)

    def test_member_properties(self) -> None:
        assert CloseCode.NORMAL_CLOSURE.sendable and CloseCode.NORMAL_CLOSURE.receivable
        assert not CloseCode.NO_STATUS_RCVD.sendable
        assert not CloseCode.ABNORMAL_CLOSURE.receivable
        assert CloseCode.GOING_AWAY.clean and CloseCode.NO_STATUS_RCVD.clean
        assert not CloseCode.PROTOCOL_ERROR.clean and not CloseCode.ABNORMAL_CLOSURE.clean

    @pytest.mark.parametrize(("code", "clean"), [
        (1000, True), (1001, True), (1005, True), (4000, True), (4999, True),
        (1002, False), (1006, False), (1011, False), (1013, False), (3000, False),
    ])
    def test_clean(self, code: int, clean: bool) -> None:
        assert is_clean(code) is clean


class TestHowItEnded:
    def test_peer_closes_with_an_app_code_is_ok(self) -> None:
        # Issue 16: an application's own 4000-4999 code is a choice, not an error.
        server = Connection(Role.SERVER)
        server.receive_data(client_frame(0x8, b"\x0f\xa1room full"))
        assert server.clean
        exc = server.close_exception()
        assert type(exc) is ConnectionClosedOK and isinstance(exc, ConnectionClosed)
        assert (exc.code, exc.reason) == (4001, "room full")

    def test_peer_closes_with_an_error_code(self) -> None:
        client = Connection(Role.CLIENT)
        client.receive_data(server_frame(0x8, b"\x03\xf3oops"))  # 1011
        assert not client.clean
        assert type(client.close_exception()) is ConnectionClosedError
        assert client.ending is Ending.WAIT  # RFC 6455 §7.1.1: the server closes TCP first

    def test_our_close_is_ok_whatever_the_code(self) -> None:
        server = Connection(Role.SERVER)
        server.send_close(1008, "policy")
        assert (server.sent_code, server.sent_reason) == (1008, "policy")
        exc = server.close_exception()  # the peer's answer has not come yet
        assert type(exc) is ConnectionClosedOK and (exc.code, exc.reason) == (1008, "policy")
        assert server.ending is Ending.NONE
        server.receive_data(client_frame(0x8, b"\x03\xf0policy"))
        assert server.state is State.CLOSED and server.ending is Ending.CLOSE
        assert type(server.close_exception()) is ConnectionClosedOK

    def test_close_without_a_code(self) -> None:
        server = Connection(Role.SERVER)
        server.send_close(None)
        exc = server.close_exception()
        assert exc.code == CloseCode.NO_STATUS_RCVD

    def test_dropped_without_close(self) -> None:
        server = Connection(Role.SERVER)
        server.connection_lost()
        exc = server.close_exception()
        assert type(exc) is ConnectionClosedError and exc.code == 1006
        assert not server.clean

    def test_open_connection_has_no_close(self) -> None:
        server = Connection(Role.SERVER)
        assert not server.clean
        assert server.close_exception().code == 1006
        assert server.ending is Ending.NONE

    def test_failure_half_closes_until_eof(self) -> None:
        # RFC 6455 §7.1.7: fail, then let the peer read our Close: FIN, discard, EOF, close.
        server = Connection(Role.SERVER)
        server.receive_data(bytes((0x83, 0x80)) + PEER_KEY)  # unknown opcode 3
        assert isinstance(server.error, ProtocolError)
        assert server.sent_code == 1002 and server.close_sent
        assert server.ending is Ending.HALF_CLOSE
        assert type(server.close_exception()) is ConnectionClosedError
        assert server.receive_data(client_frame(0x1, b"more")) == []  # discarded
        server.receive_eof()
        assert server.ending is Ending.CLOSE

    def test_eof_without_close(self) -> None:
        client = Connection(Role.CLIENT)
        client.receive_eof()
        assert client.state is State.CLOSED and client.close_code == 1006
        assert client.ending is Ending.CLOSE

    def test_invalid_close_code_to_send(self) -> None:
        server = Connection(Role.SERVER)
        with pytest.raises(InvalidArgument):
            server.send_close(1005)
        with pytest.raises(ValueError):  # InvalidArgument is a ValueError too
            server.send_close(1000, "x" * 124)
        with pytest.raises(InvalidArgument):
            server.send_ping(b"x" * 126)


class TestOpening:
    """RFC 6455 §4.1: CONNECTING until the handshake completes; frames may follow at once."""

    def test_bytes_with_the_head_wait_for_the_handshake(self) -> None:
        server = Connection(Role.SERVER, state=State.CONNECTING)
        assert server.receive_pending() == []
        server.receive_early(client_frame(0x1, b"hi"))
        server.receive_early(b"")
        server.receive_early(client_frame(0x2, b"yo"))
        assert server.has_pending
        with pytest.raises(InvalidState):
            server.receive_data(b"")
        server.handshake_complete()
        events = server.receive_pending()
        assert [e.data for e in events] == ["hi", b"yo"]  # type: ignore[attr-defined]
        assert not server.has_pending
        with pytest.raises(InvalidState):
            server.receive_early(b"late")

    def test_lost_while_connecting(self) -> None:
        client = Connection(Role.CLIENT, state=State.CONNECTING)
        client.receive_early(b"\x81")
        client.receive_eof()
        assert client.state is State.CONNECTING
        client.connection_lost()
        assert client.state is State.CLOSED and not client.has_pending


class TestPreparedFrame:
    """One encoding for a fan-out (docs/architecture.md, "Seams"); RFC 7692 §6, §7.1.1."""

    def test_plain_frame_is_shared(self) -> None:
        from wskit.core.connection import PreparedFrame

        frame = PreparedFrame("hi")
        assert frame.plain == b"\x81\x02hi"
        assert PreparedFrame(b"\x00").plain == b"\x82\x01\x00"
        a, b = Connection(Role.SERVER), Connection(Role.SERVER)
        assert a.send_prepared(frame) is frame.plain is b.send_prepared(frame)
        assert "text" in repr(frame)
        with pytest.raises(TypeError):
            PreparedFrame(42)  # type: ignore[arg-type]

    def test_client_masks_its_own_copy(self) -> None:
        from wskit.core.connection import PreparedFrame

        frame = PreparedFrame(b"data")
        data = Connection(Role.CLIENT).send_prepared(frame)
        assert data[1] & 0x80 and data != frame.plain

    def test_compressed_once_without_context_takeover(self) -> None:
        from wskit.core.connection import PreparedFrame
        from wskit.core.deflate import PerMessageDeflate

        def deflate(nct: bool) -> PerMessageDeflate:
            return PerMessageDeflate(remote_no_context_takeover=False,
                                     local_no_context_takeover=nct,
                                     remote_max_window_bits=12, local_max_window_bits=12)

        frame = PreparedFrame("x" * 200)
        fresh = [Connection(Role.SERVER, extensions=[deflate(True)]) for _ in range(2)]
        first, second = (c.send_prepared(frame, compress=True) for c in fresh)
        assert first is second and first[0] == 0xC1  # FIN, RSV1, TEXT
        # With context takeover each connection compresses it itself.
        taking = Connection(Role.SERVER, extensions=[deflate(False)])
        own = taking.send_prepared(frame, compress=True)
        assert own is not first and own[0] == 0xC1
        # Uncompressed, any server connection takes the plain frame (compression is per message).
        assert taking.send_prepared(frame) is frame.plain

    def test_closed_connection_refuses(self) -> None:
        from wskit.core.connection import PreparedFrame

        server = Connection(Role.SERVER)
        server.send_close()
        with pytest.raises(InvalidState):
            server.send_prepared(PreparedFrame("late"))
