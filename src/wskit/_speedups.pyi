"""Type stub of the optional C speed-ups; each mirrors a pure-Python function in wskit.core."""

from collections.abc import Callable
from typing import Any

from wskit.core.frames import FrameParser, RawFrame

def apply_mask(
    data: bytes | bytearray | memoryview, key: bytes | bytearray | memoryview, /
) -> bytes:
    """Return ``data`` XOR-ed with the 4-byte masking ``key`` repeated (RFC 6455 §5.3)."""

def parse_frames(
    parser: FrameParser, data: bytes, out: list[RawFrame], decode_text: bool, /
) -> int:
    """The complete frames at the start of ``data`` into ``out``; where they end (§5.2)."""

def parse_messages(
    data: bytes, expect_mask: bool, max_size: int, max_frames: int, max_bytes: int, /
) -> list[str | bytes] | None:
    """The payloads of ``data`` when it holds only whole messages, else None (the fast path
    of a read); the twin of ``wskit.core.frames.parse_messages_python``."""

def build_frame(
    b0: int, payload: bytes | bytearray | memoryview, key: bytes | bytearray | memoryview | None, /
) -> bytes:
    """Header byte ``b0``, length, optional masking ``key`` and payload as one frame (§5.2)."""

def split_head(
    data: bytes | bytearray, max_line_length: int, max_headers: int, max_header_bytes: int, /
) -> tuple[bytes, list[tuple[str, str]], int] | None:
    """(start line, fields, end) of a complete, valid HTTP head at the start of ``data``, or
    None (RFC 9112 §2-§5); the twin of ``wskit.core.http.split_head_python``."""

def fan_out(
    sockets: object, plain: bytes, max_buffered: int | None, one: object, open_state: object,
    outcomes: tuple[object, object, object], /,
) -> tuple[int, int, int]:
    """The loop of ``wskit.websocket.send_prepared_to`` for a frame sent as it is."""

def flush_corked(pending: list[object], join_limit: int, /) -> None:
    """The twin of ``wskit.aio.protocol.flush_corked_python``."""

def mask_key() -> bytes:
    """A fresh masking key, 4 bytes of the OS's CSPRNG (§5.3); the twin of
    ``wskit.core.masking.generate_mask_python``."""

def build_masked_frame(b0: int, payload: str | bytes | bytearray | memoryview, /) -> bytes:
    """A client's frame masked with a fresh key, a ``str`` as its UTF-8 (§5.3); the twin of
    ``wskit.core.frames.build_masked_frame_python``."""

class Sender:
    """``WebSocket.send`` with its common case in C (a connection OPEN without an extension,
    a client's frames masked with a fresh key each; str or a contiguous bytes-like object, no
    keyword); every other call goes to ``fallback``, the pure method. A method descriptor:
    ``ws.send(data)`` calls it with ws."""

    fallback: Callable[..., None]

    def __init__(self, fallback: Callable[..., None], open_state: object,
                 connection_type: type, protocol_write: Callable[..., None],
                 large_payload: int, /) -> None: ...
    def __call__(self, ws: Any, data: Any, /, **kwargs: Any) -> None: ...
    def __get__(self, obj: Any, owner: Any = None, /) -> Callable[..., None]: ...

class Reader:
    """``WebSocketProtocol.data_received`` with its common case in C (a read of whole
    messages on an OPEN connection without an extension, delivered to the plain listeners of
    a ``Dispatcher`` registered as ``dispatch``); every other read goes to ``fallback``."""

    fallback: Callable[..., None]
    dispatch: Callable[..., None] | None

    def __init__(self, fallback: Callable[..., None], open_state: object,
                 connection_type: type, parser_type: type, /) -> None: ...
    def __call__(self, protocol: Any, data: bytes, /) -> None: ...
    def __get__(self, obj: Any, owner: Any = None, /) -> Callable[..., None]: ...

class GetBuffer:
    """``WebSocketProtocol.get_buffer`` in C when no frame is arriving (the thread's shared
    buffer); every other call goes to ``fallback``, the pure method."""

    fallback: Callable[..., memoryview]

    def __init__(self, fallback: Callable[..., memoryview], /) -> None: ...
    def __call__(self, protocol: Any, sizehint: int, /) -> memoryview: ...
    def __get__(self, obj: Any, owner: Any = None, /) -> Callable[..., memoryview]: ...

class BufferUpdated:
    """``WebSocketProtocol.buffer_updated`` in C for a read into the shared buffer (its bytes
    to ``reader``'s common case); every other call goes to ``fallback``, the pure method."""

    fallback: Callable[..., None]

    def __init__(self, fallback: Callable[..., None], reader: Reader, /) -> None: ...
    def __call__(self, protocol: Any, nbytes: int, /) -> None: ...
    def __get__(self, obj: Any, owner: Any = None, /) -> Callable[..., None]: ...
