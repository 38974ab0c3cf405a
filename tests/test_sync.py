"""wskit.sync: the blocking client against a real server (websockets' threaded server), on
private asyncio and uvloop loops; several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, serve

import wskit
import wskit.sync


def handler(ws: ServerConnection) -> None:
    assert ws.request is not None
    path = ws.request.path
    if path == "/headers":
        ws.send(f"{ws.request.headers.get('X-Token')} {ws.subprotocol}")
    if path == "/bye":
        ws.close(1000, "bye")
        return
    if path == "/broken":
        ws.close(1011, "oops")
        return
    for message in ws:
        ws.send(message)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    def select(conn: ServerConnection, offered: Any) -> str | None:
        return "chat" if "chat" in offered else None

    with serve(handler, "127.0.0.1", 0, subprotocols=["chat"], select_subprotocol=select,
               compression=None) as running:
        thread = threading.Thread(target=running.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{running.socket.getsockname()[1]}"
        running.shutdown()


@pytest.fixture
def use_uvloop(loop_kind: str) -> bool:
    if loop_kind == "uvloop":
        pytest.importorskip("uvloop")
    return loop_kind == "uvloop"


def test_send_recv_both_kinds(server: str, use_uvloop: bool) -> None:
    with wskit.sync.connect(server + "/echo", use_uvloop=use_uvloop) as ws:
        ws.send("text")
        ws.send(b"\x00binary")
        ws.send(bytearray(b"mutable"))
        assert ws.recv(timeout=10) == "text"
        assert ws.recv(timeout=10) == b"\x00binary"
        assert ws.recv(timeout=10) == b"mutable"
        assert ws.url == server + "/echo"
        assert ws.ping(timeout=10) >= 0
    assert ws.is_closed and ws.close_code == 1000


def test_recv_timeout_leaves_the_connection_usable(server: str, use_uvloop: bool) -> None:
    with wskit.sync.connect(server + "/echo", use_uvloop=use_uvloop) as ws:
        with pytest.raises(TimeoutError, match=r"^no message within 0.05 s$"):
            ws.recv(timeout=0.05)
        ws.send("after")
        assert ws.recv(timeout=10) == "after"


def test_iteration_ends_at_a_normal_close_and_raises_otherwise(server: str,
                                                                use_uvloop: bool) -> None:
    ws = wskit.sync.connect(server + "/bye", use_uvloop=use_uvloop)
    assert list(ws) == []
    assert (ws.close_code, ws.close_reason) == (1000, "bye")
    with pytest.raises(wskit.ConnectionClosed):
        ws.recv()
    ws = wskit.sync.connect(server + "/broken", use_uvloop=use_uvloop)
    with pytest.raises(wskit.ConnectionClosed) as info:
        list(ws)
    assert info.value.code == 1011


def test_same_options_as_the_async_client(server: str, use_uvloop: bool,
                                          proxies: dict[str, str]) -> None:
    with wskit.sync.connect(server + "/headers", use_uvloop=use_uvloop,
                            headers={"X-Token": "t1"}, subprotocols=["chat"],
                            proxy=proxies["http"], max_message_size=1024) as ws:
        assert ws.subprotocol == "chat"
        assert ws.recv(timeout=10) == "t1 chat"
        ws.send("x" * 2000)
        with pytest.raises(wskit.ConnectionClosed) as info:
            ws.recv(timeout=10)  # the echo is over our limit: 1009
        assert info.value.code == 1009


def test_errors_are_the_async_clients(use_uvloop: bool) -> None:
    from cli_process import free_port

    port = free_port()
    with pytest.raises(wskit.ConnectFailed, match="connection refused"):
        wskit.sync.connect(f"ws://127.0.0.1:{port}/", use_uvloop=use_uvloop)
    with pytest.raises(ValueError, match="does not reconnect"):
        wskit.sync.connect(f"ws://127.0.0.1:{port}/", reconnect=True)


def test_several_threads_share_one_connection(server: str, use_uvloop: bool) -> None:
    threads, each = 8, 50
    received: list[Any] = []
    with wskit.sync.connect(server + "/echo", use_uvloop=use_uvloop) as ws:

        def sender(index: int) -> None:
            for n in range(each):
                ws.send(f"{index}:{n}")

        def receiver() -> None:
            for _ in range(threads * each // 2):
                received.append(ws.recv(timeout=10))

        workers = [threading.Thread(target=sender, args=(i,)) for i in range(threads)]
        workers += [threading.Thread(target=receiver) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
    assert sorted(received) == sorted(f"{i}:{n}" for i in range(threads) for n in range(each))
    # Each sender's messages arrive in its order.
    for i in range(threads):
        mine = [m for m in received if m.startswith(f"{i}:")]
        assert len(mine) == each
