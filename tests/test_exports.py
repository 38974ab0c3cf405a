"""The public API, pinned: what ``import wskit`` offers, and the shape of the error family."""

from __future__ import annotations

import wskit

PUBLIC = {
    "App", "CloseCode", "ConnectionClosed", "ConnectionClosedError", "ConnectionClosedOK", "Hub",
    "HubError", "Routes", "ConnectFailed", "ProxyError", "ReconnectingWebSocket",
    "InvalidArgument", "InvalidHandshake", "InvalidState", "KeepaliveTimeout", "Limits",
    "LocalError", "MessageTooBig", "NegotiationError", "PayloadNotUTF8", "PreparedFrame",
    "ProtocolError", "RemoteError", "Request", "Response", "Stream", "WSKitError", "WebSocket",
    "Positions", "__version__", "broadcast", "connect", "run",
}


def test_all_is_pinned() -> None:
    # A name added to or removed from the public API is a decision: update PUBLIC with it.
    assert set(wskit.__all__) == PUBLIC
    assert len(wskit.__all__) == len(PUBLIC)  # no duplicates
    for name in wskit.__all__:
        assert hasattr(wskit, name), name


def test_error_family() -> None:
    for name in ("LocalError", "RemoteError", "ConnectionClosed", "InvalidHandshake"):
        assert issubclass(getattr(wskit, name), wskit.WSKitError)
    assert issubclass(wskit.InvalidState, wskit.LocalError)
    assert issubclass(wskit.InvalidArgument, wskit.LocalError)
    assert issubclass(wskit.InvalidArgument, ValueError)
    for name in ("ProtocolError", "PayloadNotUTF8", "MessageTooBig"):
        assert issubclass(getattr(wskit, name), wskit.RemoteError)
    assert issubclass(wskit.ConnectionClosedOK, wskit.ConnectionClosed)
    assert issubclass(wskit.ConnectionClosedError, wskit.ConnectionClosed)
    assert not issubclass(wskit.ConnectionClosedOK, wskit.ConnectionClosedError)
    assert issubclass(wskit.KeepaliveTimeout, wskit.ConnectionClosedError)
    assert issubclass(wskit.KeepaliveTimeout, TimeoutError)
    assert wskit.KeepaliveTimeout().code == wskit.CloseCode.INTERNAL_ERROR == 1011
    # A handshake refusal is an HTTP status, not a close code (issue 10).
    refused = wskit.InvalidHandshake("no", status=403)
    assert refused.status == 403 and not hasattr(refused, "close_code")
    assert not issubclass(wskit.InvalidHandshake, wskit.RemoteError)
    assert issubclass(wskit.NegotiationError, wskit.InvalidHandshake)


def test_remote_errors_carry_their_close_codes() -> None:
    assert wskit.ProtocolError("x").close_code == wskit.CloseCode.PROTOCOL_ERROR
    assert wskit.PayloadNotUTF8("x").close_code == wskit.CloseCode.INVALID_PAYLOAD
    assert wskit.MessageTooBig("x").close_code == wskit.CloseCode.MESSAGE_TOO_BIG


def test_limits_defaults_written_once() -> None:
    # App, connect and the command line read the defaults of core/limits.py.
    import inspect

    from wskit.cli import build_parser
    from wskit.core import limits

    for fn in (wskit.App.__init__, wskit.connect, wskit.Limits.__init__):
        params = inspect.signature(fn).parameters
        assert params["max_message_size"].default == limits.MAX_MESSAGE_SIZE
        assert params["close_timeout"].default == limits.CLOSE_TIMEOUT
        assert params["ping_interval"].default == limits.PING_INTERVAL
        assert params["max_queue"].default == limits.MAX_QUEUE
    serve = build_parser().parse_args(["serve"])
    assert serve.max_message_size == limits.MAX_MESSAGE_SIZE
