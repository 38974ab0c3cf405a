"""HTTP/1.1 messages of the opening handshake: bounded parsing and serialising of heads."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

from .errors import InvalidHandshake, InvalidState
from .limits import MAX_HEADER_BYTES, MAX_HEADERS, MAX_LINE_LENGTH
from .masking import speedups

__all__ = [
    "Headers",
    "Query",
    "Request",
    "RequestParser",
    "Response",
    "ResponseParser",
    "parse_head",
    "parse_head_python",
    "parse_request",
    "parse_response",
    "parse_response_head",
    "parse_response_head_python",
    "serialize_fields",
    "serialize_request",
    "serialize_response",
    "split_head",
    "split_head_python",
]

# RFC 9110 §5.6.2: token = 1*tchar.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_STR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: field-value characters are VCHAR, obs-text, SP and HTAB; CR, LF, NUL and the
# other controls are refused rather than replaced, which the RFC allows and is the safer choice.
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_FIELD_VALUE_STR = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# RFC 9112 §3.2: a request-target is visible ASCII only (no spaces, no controls, no obs-text).
_TARGET = re.compile(rb"[\x21-\x7e]+")
_TARGET_STR = re.compile(r"[\x21-\x7e]+")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_STATUS_LINE = re.compile(rb"(HTTP/[0-9]\.[0-9]) ([1-5][0-9][0-9])(?: (.*))?", re.DOTALL)

# One header line as split_head_python accepts it: token ":" OWS value OWS (RFC 9112 §5).
_FIELD_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*")

_SP_HTAB = b" \t"
_METHODS = {b"GET": "GET", b"HEAD": "HEAD", b"POST": "POST"}
# RFC 9112 §2.2 asks servers to ignore "at least one" empty line before the request line; a few
# are tolerated, more are refused so that a stream of CRLFs cannot keep the parser busy forever.
_MAX_LEADING_EMPTY_LINES = 4


_NO_PAIRS: list[tuple[str, str]] = []
_NO_INDEX: dict[str, list[str]] = {}


def _index_of(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Each field's values under its lower-case name, in order (the index of ``Headers``)."""
    index: dict[str, list[str]] = {}
    for name, value in pairs:
        key = name.lower()
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    return index


class Headers:
    """A case-insensitive multi-map of header fields that keeps their order and spelling."""

    __slots__ = ("_index", "_packed", "_pairs")

    def __init__(self, list_of_pairs: Iterable[tuple[str, str]] | None = None) -> None:
        self._pairs: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        # After ``compact``: every field in one string, "name:value" lines; None before.
        self._packed: str | None = None
        if list_of_pairs is not None:
            for name, value in list_of_pairs:
                self.add(name, value)

    @classmethod
    def of_fields(cls, pairs: list[tuple[str, str]]) -> Headers:
        """Headers holding ``pairs`` (taken, not copied): what ``Headers(pairs)`` gives, in one
        loop instead of an ``add`` call per field (the parser's fields, once per connection)."""
        return cls._parsed(pairs, _index_of(pairs))

    @classmethod
    def _parsed(cls, pairs: list[tuple[str, str]], index: dict[str, list[str]]) -> Headers:
        # parse_head's fields and their index, taken as they are (they agree by construction).
        headers = cls.__new__(cls)
        headers._pairs = pairs
        headers._index = index
        headers._packed = None
        return headers

    def by_name(self) -> dict[str, list[str]]:
        """Every field's values under its lower-case name, in order: to be read, never changed
        (it is the headers' own index, unless they are compacted). For code that looks up
        several fields at once, such as the handshake's checks."""
        if self._packed is None:
            return self._index
        return _index_of(self._fields())

    def compact(self) -> None:
        """Keep the fields in one string from now on, looked up by a scan instead of an index.

        For the headers of an open connection, which are seldom read once the handshake is
        over: a few hundred bytes instead of some 300 per field (issue 14). Every method
        behaves as before; ``add`` unpacks them again.
        """
        pairs = self._pairs
        if self._packed is not None or not pairs:
            return
        for name, value in pairs:
            if ":" in name or "\n" in name or "\n" in value:
                return  # (fields of the parser never have them; built by hand they might)
        self._packed = "\n".join([f"{name}:{value}" for name, value in pairs])
        # Shared and never written to: ``add`` gives the headers their own first.
        self._pairs = _NO_PAIRS
        self._index = _NO_INDEX

    def _fields(self) -> list[tuple[str, str]]:
        packed = self._packed
        if packed is None:
            return self._pairs
        fields = []
        for line in packed.split("\n"):
            name, _, value = line.partition(":")
            fields.append((name, value))
        return fields

    def _values(self, name: str) -> list[str]:
        packed = self._packed
        if packed is None:
            return self._index.get(name.lower(), [])
        key = name.lower()
        values = []
        for line in packed.split("\n"):
            field, _, value = line.partition(":")
            if field.lower() == key:
                values.append(value)
        return values

    def add(self, name: str, value: str) -> None:
        """Append a field; earlier fields of the same name are kept."""
        if self._packed is not None:
            fields = self._fields()
            self._packed = None
            self._pairs = []
            self._index = {}
            for field in fields:
                self.add(*field)
        self._pairs.append((name, value))
        self._index.setdefault(name.lower(), []).append(value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default`` when absent."""
        values = self._index.get(name.lower()) if self._packed is None else self._values(name)
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (a new list; empty when absent)."""
        return list(self._values(name))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if self._packed is None:
            return name.lower() in self._index
        return bool(self._values(name))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields())

    def items(self) -> Iterator[tuple[str, str]]:
        """(name, value) pairs in order, names as spelled by the sender."""
        return iter(self._fields())

    def raw_items(self) -> list[tuple[str, str]]:
        """A copy of the (name, value) pairs in order, names as spelled by the sender."""
        return list(self._fields())

    def __len__(self) -> int:
        packed = self._packed
        return len(self._pairs) if packed is None else packed.count("\n") + 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return ([(n.lower(), v) for n, v in self._fields()]
                == [(n.lower(), v) for n, v in other._fields()])

    __hash__ = None  # type: ignore[assignment]  # mutable, so unhashable like list and dict

    def __repr__(self) -> str:
        return f"Headers({self._fields()!r})"


class Query(dict[str, str]):
    """Query parameters: a dict of the last value of each name, plus ``get_all`` for every value.

    ``?tag=a&tag=b`` gives ``query["tag"] == "b"`` and ``query.get_all("tag") == ["a", "b"]``.
    """

    __slots__ = ("_all",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        every: dict[str, list[str]] = {}
        for name, value in pairs:
            every.setdefault(name, []).append(value)
        super().__init__((name, values[-1]) for name, values in every.items())
        self._all = every

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (a new list; empty when absent)."""
        return list(self._all.get(name, ()))


@dataclass
class Request:
    """A parsed request head: the start line and the header fields."""

    method: str
    target: str
    version: str
    headers: Headers

    def _split(self) -> tuple[str, str]:
        # Origin-form ("/path?query") is split by hand: urlsplit reads "//a/b" as an authority.
        if "://" in self.target and not self.target.startswith("/"):
            parts = urlsplit(self.target)  # absolute-form, RFC 9112 §3.2.2
            return parts.path or "/", parts.query
        path, _, query = self.target.partition("?")
        return path, query

    @property
    def path(self) -> str:
        """The request target without its query."""
        return self._split()[0]

    @property
    def query(self) -> Query:
        """The query parameters, percent-decoded; when a name repeats, the last value wins
        (``get_all`` gives every value)."""
        return Query(parse_qsl(self._split()[1], keep_blank_values=True))


@dataclass
class Response:
    """A parsed response: status line, header fields and (for non-101 statuses) the body."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = "HTTP/1.1"


class _HeadParser:
    """Shared line splitting and header-field parsing for requests and responses, bounded."""

    # The status of the errors this parser raises, for each kind of fault.
    _malformed_status = 400
    _too_large_status = 431
    _start_line_too_long_status = 414
    _start_line_name = "request line"

    def __init__(self, max_line_length: int, max_headers: int, max_header_bytes: int) -> None:
        self.max_line_length = max_line_length
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        #: Bytes received after the head (and body): the first bytes of the next protocol.
        self.leftover = b""
        self._buffer = bytearray()
        self._pos = 0  # start of the line being read
        self._scan = 0  # where to resume looking for LF, so each byte is searched once
        self._in_headers = False
        self._empty_lines = 0
        self._header_bytes = 0
        self._headers = Headers()
        self._error: InvalidHandshake | None = None
        self._complete = False

    def _fail(self, reason: str, status: int | None = None) -> InvalidHandshake:
        return InvalidHandshake(reason, status=self._malformed_status if status is None else status)

    def _feed(self, data: bytes | bytearray | memoryview) -> bool:
        """Consume ``data``; True once the head and any body are complete."""
        if self._error is not None:
            raise self._error
        if self._complete:
            raise InvalidState("the parser has already returned its message; read .leftover")
        self._buffer += data
        try:
            done = self._advance()
        except InvalidHandshake as exc:
            self._error = exc
            self._buffer.clear()
            raise
        if done:
            self._complete = True
        return done

    def _advance(self) -> bool:
        buf = self._buffer
        if not self._in_headers and not self._pos and not self._empty_lines:
            # The common case in one step: the whole head is here and valid (split_head).
            head = split_head(buf, self.max_line_length, self.max_headers, self.max_header_bytes)
            if head is not None:
                start, fields, end = head
                self._on_start_line(start)
                self._in_headers = True
                add = self._headers.add
                for name, value in fields:
                    add(name, value)
                self._pos = self._scan = end
                return self._on_head_complete()
        while True:
            end = buf.find(b"\n", self._scan)
            if end < 0:
                self._check_partial_line()
                self._compact()
                return False
            # RFC 9112 §2.2: lines end with CRLF; a bare LF is refused rather than guessed at.
            if end == self._pos or buf[end - 1] != 0x0D:
                raise self._fail("malformed HTTP head: a line ends with a bare LF instead of CRLF")
            line = bytes(buf[self._pos : end - 1])
            self._pos = self._scan = end + 1
            if self._on_line(line):
                return self._on_head_complete()

    def _compact(self) -> None:
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        # Every byte so far was searched for LF; the CR before one is checked when the LF comes.
        self._scan = len(self._buffer)

    def _check_partial_line(self) -> None:
        # Limits are checked as bytes arrive: an endless line without CRLF fails at the limit.
        partial = len(self._buffer) - self._pos
        if partial and self._buffer[-1] == 0x0D:
            partial -= 1  # the CR of a CRLF still on its way
        if not self._in_headers:
            if partial > self.max_line_length:
                raise self._fail(
                    f"{self._start_line_name} longer than {self.max_line_length} bytes",
                    self._start_line_too_long_status,
                )
            return
        if partial > self.max_line_length:
            raise self._fail(
                f"header line longer than {self.max_line_length} bytes", self._too_large_status
            )
        if self._header_bytes + partial > self.max_header_bytes:
            raise self._fail(
                f"header fields larger than {self.max_header_bytes} bytes", self._too_large_status
            )

    def _on_line(self, line: bytes) -> bool:
        """Handle one complete line (without CRLF); True when it ends the head."""
        if b"\r" in line:
            # RFC 9112 §2.2: a bare CR is invalid; we refuse the message instead of replacing it.
            raise self._fail("malformed HTTP head: bare CR inside a line")
        if not self._in_headers:
            if not line:
                # RFC 9112 §2.2: empty lines before the start line are ignored (a few of them).
                self._empty_lines += 1
                if self._empty_lines > _MAX_LEADING_EMPTY_LINES:
                    raise self._fail(f"too many empty lines before the {self._start_line_name}")
                return False
            if len(line) > self.max_line_length:
                raise self._fail(
                    f"{self._start_line_name} longer than {self.max_line_length} bytes",
                    self._start_line_too_long_status,
                )
            self._on_start_line(line)
            self._in_headers = True
            return False
        if not line:
            return True
        self._on_header_line(line)
        return False

    def _on_start_line(self, line: bytes) -> None:
        raise NotImplementedError  # pragma: no cover

    def _on_head_complete(self) -> bool:
        raise NotImplementedError  # pragma: no cover

    def _on_header_line(self, line: bytes) -> None:
        if len(line) > self.max_line_length:
            raise self._fail(
                f"header line longer than {self.max_line_length} bytes", self._too_large_status
            )
        self._header_bytes += len(line) + 2
        if self._header_bytes > self.max_header_bytes:
            raise self._fail(
                f"header fields larger than {self.max_header_bytes} bytes", self._too_large_status
            )
        if len(self._headers) >= self.max_headers:
            raise self._fail(f"more than {self.max_headers} header fields", self._too_large_status)
        if line[0] in _SP_HTAB:
            # RFC 9112 §5.2: obs-fold (and whitespace before the first field, §2.2) is refused.
            raise self._fail("malformed header: line folding (obs-fold) is not allowed")
        name, colon, raw_value = line.partition(b":")
        if not colon:
            raise self._fail(f"malformed header line without a colon: {_snippet(line)}")
        if name and name[-1] in _SP_HTAB:
            # RFC 9112 §5.1: whitespace between field name and colon MUST be rejected with 400.
            raise self._fail(f"malformed header: whitespace before the colon in {_snippet(name)}")
        if not _TOKEN.fullmatch(name):
            raise self._fail(f"malformed header: invalid field name {_snippet(name)}")
        value = raw_value.strip(_SP_HTAB)
        if not _FIELD_VALUE.fullmatch(value):
            # RFC 9110 §5.5: CR, LF, NUL (and other controls) in a value are refused.
            raise self._fail(f"malformed header: control character in the value of {name.decode()}")
        self._headers.add(name.decode("ascii"), value.decode("latin-1"))

    def _take_rest(self) -> None:
        self.leftover = bytes(self._buffer[self._pos :])
        self._buffer.clear()
        self._pos = self._scan = 0


def split_head_python(
    data: bytes | bytearray, max_line_length: int, max_headers: int, max_header_bytes: int
) -> tuple[bytes, list[tuple[str, str]], int] | None:
    """(start line, [(name, value), ...], end) of a complete, valid head at the start of data.

    Only the common case, in one step: the head ends in data (CRLF CRLF), with no empty line
    before the start line, no bare CR or LF, every header line a valid field (RFC 9112 §5,
    RFC 9110 §5.5) and every limit kept. Anything else is None, and the line-by-line parser
    (``_HeadParser``) then gives the same result or the error with its exact status. ``end``
    is where the bytes after the head begin. ``split_head`` is its C twin when built.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0 or data[0] in b"\r\n":
        return None
    lines = bytes(data[:end]).split(b"\r\n")
    start = lines[0]
    if len(start) > max_line_length or b"\r" in start or b"\n" in start:
        return None
    if len(lines) - 1 > max_headers:
        return None
    fields = []
    header_bytes = 0
    match = _FIELD_LINE.fullmatch
    for line in lines[1:]:
        header_bytes += len(line) + 2
        found = match(line)
        if found is None or len(line) > max_line_length or header_bytes > max_header_bytes:
            return None
        name, value = found.groups()
        fields.append((name.decode("ascii"), value.decode("latin-1")))
    return start, fields, end + 4


ParsedHead = tuple[str, str, list[tuple[str, str]], dict[str, list[str]], int]


def parse_head_python(
    data: bytes | bytearray, max_line_length: int, max_headers: int, max_header_bytes: int
) -> ParsedHead | None:
    """(method, target, fields, index, end) of a complete, valid request head at the start of
    ``data``: the fields as (name, value) pairs in order, ``index`` their values under each
    lower-case name, ``end`` where the bytes after the head begin. None for anything else.

    ``split_head``'s head with a start line of GET, HEAD or POST, a visible-ASCII target and
    HTTP/1.1 (RFC 9112 §3, RFC 6455 §4.1); ``parse_head`` is its C twin when built.
    """
    head = split_head(data, max_line_length, max_headers, max_header_bytes)
    if head is None:
        return None
    start, fields, end = head
    parts = start.split(b" ")
    # RFC 9112 §3: method SP request-target SP HTTP-version; RFC 6455 §4.1: HTTP/1.1.
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        return None
    method = _METHODS.get(parts[0])
    target = parts[1]
    if method is None or not _TARGET.fullmatch(target):
        return None
    return method, target.decode("ascii"), fields, _index_of(fields), end


def parse_request(
    data: bytes | bytearray, max_line_length: int = MAX_LINE_LENGTH,
    max_headers: int = MAX_HEADERS, max_header_bytes: int = MAX_HEADER_BYTES,
) -> tuple[Request, int] | None:
    """The request whose complete, valid head starts ``data``, and where the bytes after the
    head begin; None for anything else.

    The common case of a server's first read, without a ``RequestParser``: one
    ``parse_head``. None means "ask a ``RequestParser``": it gives the same request, or
    waits for more bytes, or raises the error with its status (every limit and check is
    that parser's; this one only declines what it does not pass).
    """
    head = parse_head(data, max_line_length, max_headers, max_header_bytes)
    if head is None:
        return None
    method, target, fields, index, end = head
    return Request(method, target, "HTTP/1.1", Headers._parsed(fields, index)), end


ParsedResponseHead = tuple[str, int, str, list[tuple[str, str]], dict[str, list[str]], int]

# The version of nearly every response, as one shared string rather than a copy each.
_HTTP_11 = "HTTP/1.1"


def parse_response_head_python(
    data: bytes | bytearray, max_line_length: int, max_headers: int, max_header_bytes: int
) -> ParsedResponseHead | None:
    """(version, status, reason, fields, index, end) of a complete, valid response head at
    the start of ``data``: ``split_head``'s head with a status line that ``ResponseParser``
    accepts (RFC 9112 §4: HTTP/1.x SP 3-digit status [SP reason], the reason without
    controls), ``index`` the fields' values under each lower-case name, ``end`` where the
    bytes after the head begin. None for anything else; ``parse_response_head`` is its C
    twin when built.
    """
    head = split_head(data, max_line_length, max_headers, max_header_bytes)
    if head is None:
        return None
    start, fields, end = head
    match = _STATUS_LINE.fullmatch(start)
    if match is None:
        return None
    version, status, reason = match.group(1, 2, 3)
    if not version.startswith(b"HTTP/1.") or (
            reason is not None and not _FIELD_VALUE.fullmatch(reason)):
        return None
    return (_HTTP_11 if version == b"HTTP/1.1" else version.decode("ascii"), int(status),
            reason.decode("latin-1") if reason else "", fields, _index_of(fields), end)


def parse_response(
    data: bytes | bytearray, max_line_length: int = MAX_LINE_LENGTH,
    max_headers: int = MAX_HEADERS, max_header_bytes: int = MAX_HEADER_BYTES,
) -> tuple[Response, int] | None:
    """The response whose complete, valid head starts ``data``, when it has no body (1xx,
    204, 304: RFC 9110 §6.4.1), and where the bytes after the head begin; None for anything
    else.

    The common case of a client's first read (the 101), without a ``ResponseParser``: one
    ``parse_response_head``. None means "ask a ``ResponseParser``" (with ``method="GET"``):
    it gives the same response, or waits for more bytes or the body, or raises the error.
    """
    head = parse_response_head(data, max_line_length, max_headers, max_header_bytes)
    if head is None:
        return None
    version, status, reason, fields, index, end = head
    if not (100 <= status < 200 or status == 204 or status == 304):
        return None  # a body may follow: the parser reads it
    return Response(status, reason, Headers._parsed(fields, index), b"", version), end


def _snippet(data: bytes, limit: int = 40) -> str:
    text = repr(data[:limit])
    return text + "..." if len(data) > limit else text


class RequestParser(_HeadParser):
    """Parses a request head fed in pieces; ``feed`` returns the Request once complete.

    Errors are ``InvalidHandshake`` with the status a server should answer: 400 malformed,
    414 request line too long, 431 header fields too many or too large, 505 HTTP version.
    """

    def __init__(
        self,
        max_line_length: int = MAX_LINE_LENGTH,
        max_headers: int = MAX_HEADERS,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        super().__init__(max_line_length, max_headers, max_header_bytes)
        self._method = self._target = self._version = ""
        self._request: Request | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> Request | None:
        """Consume bytes; None means more are needed. Afterwards ``leftover`` holds the rest."""
        if self._feed(data):
            return self._request
        return None

    def _on_start_line(self, line: bytes) -> None:
        parts = line.split(b" ")
        # RFC 9112 §3: request-line = method SP request-target SP HTTP-version, single spaces.
        if len(parts) != 3:
            raise self._fail(f"malformed request line: {_snippet(line)}")
        method, target, version = parts
        if not _TOKEN.fullmatch(method):
            raise self._fail(f"malformed request line: invalid method {_snippet(method)}")
        if not _TARGET.fullmatch(target):
            raise self._fail(f"malformed request line: invalid request target {_snippet(target)}")
        if not _VERSION.fullmatch(version):
            raise self._fail(f"malformed request line: invalid HTTP version {_snippet(version)}")
        if version != b"HTTP/1.1":
            # RFC 6455 §4.1: the upgrade needs HTTP/1.1; HTTP/1.0 has no Upgrade mechanism.
            raise self._fail(f"HTTP version {version.decode()} is not supported; use HTTP/1.1", 505)
        # The common method and the one version as shared strings, not copies per connection.
        self._method = _METHODS.get(method) or method.decode("ascii")
        self._target = target.decode("ascii")
        self._version = "HTTP/1.1"

    def _on_head_complete(self) -> bool:
        self._request = Request(self._method, self._target, self._version, self._headers)
        # The request of an upgrade has no body: what follows the blank line is WebSocket data.
        self._take_rest()
        return True


class ResponseParser(_HeadParser):
    """Parses a response fed in pieces; ``feed`` returns the Response once complete.

    A 101 (or other 1xx, 204, 304) has no body and ``leftover`` holds the bytes after the head.
    Otherwise a body of ``Content-Length`` bytes is read; a body longer than ``max_body`` is cut
    to ``max_body`` bytes (it only serves to explain the refusal) and the rest is not read.
    Without Content-Length (including ``Transfer-Encoding``) the body is left in ``leftover``.
    Errors are ``InvalidHandshake`` with status 502: the peer sent an invalid response.
    """

    _malformed_status = 502
    _too_large_status = 502
    _start_line_too_long_status = 502
    _start_line_name = "status line"

    def __init__(
        self,
        max_line_length: int = MAX_LINE_LENGTH,
        max_headers: int = MAX_HEADERS,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body: int = 65536,
        *,
        method: str = "GET",
    ) -> None:
        super().__init__(max_line_length, max_headers, max_header_bytes)
        self.max_body = max_body
        #: The request's method: a 2xx answer to CONNECT has no body (RFC 9110 §9.3.6).
        self.method = method
        self._status = 0
        self._reason = ""
        self._version = ""
        self._body_length: int | None = None  # set once the head is complete
        self._response: Response | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> Response | None:
        """Consume bytes; None means more are needed. Afterwards ``leftover`` holds the rest."""
        if self._feed(data):
            return self._response
        return None

    def _advance(self) -> bool:
        if self._body_length is None:
            return super()._advance()
        return self._read_body()

    def _on_start_line(self, line: bytes) -> None:
        # RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]; the SP
        # before an empty reason is often omitted, so it is optional here.
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            raise self._fail(f"malformed status line: {_snippet(line)}")
        version, status, reason = match.group(1, 2, 3)
        if not version.startswith(b"HTTP/1."):
            raise self._fail(f"unsupported HTTP version in response: {version.decode()}")
        if reason is not None and not _FIELD_VALUE.fullmatch(reason):
            raise self._fail("malformed status line: control character in the reason phrase")
        self._version = version.decode("ascii")
        self._status = int(status)
        self._reason = reason.decode("latin-1") if reason else ""

    def _on_head_complete(self) -> bool:
        status = self._status
        tunnel = self.method == "CONNECT" and 200 <= status < 300
        if 100 <= status < 200 or status in (204, 304) or tunnel or (
            "Transfer-Encoding" in self._headers
        ):
            self._body_length = 0
        else:
            self._body_length = self._content_length()
        return self._read_body()

    def _content_length(self) -> int:
        values = self._headers.get_all("Content-Length")
        if not values:
            return 0
        # RFC 9110 §8.6: several values (in one field or several) are only valid when identical.
        lengths = {item.strip() for value in values for item in value.split(",")}
        if len(lengths) != 1:
            raise self._fail(f"conflicting Content-Length values: {', '.join(values)}")
        (length,) = lengths
        if not length.isdigit() or not length.isascii():
            raise self._fail(f"invalid Content-Length: {length!r}")
        return int(length)

    def _read_body(self) -> bool:
        assert self._body_length is not None
        wanted = min(self._body_length, self.max_body)
        available = len(self._buffer) - self._pos
        if available < wanted:
            self._compact()
            return False
        start = self._pos
        body = bytes(self._buffer[start : start + wanted])
        self._pos = start + wanted
        if wanted < self._body_length:
            self._buffer.clear()  # the truncated remainder is never WebSocket data
            self._pos = 0
        self._take_rest()
        self._response = Response(self._status, self._reason, self._headers, body, self._version)
        return True


def _encode_fields(headers: Iterable[tuple[str, str]]) -> list[bytes]:
    lines = []
    for name, value in headers:
        if not _TOKEN_STR.fullmatch(name):
            raise ValueError(f"invalid header name: {name!r}")
        # Refusing CR/LF here stops header injection through values built from user input.
        if not _FIELD_VALUE_STR.fullmatch(value) or value != value.strip(" \t"):
            raise ValueError(f"invalid value for header {name}: {value!r}")
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    return lines


def serialize_fields(headers: Iterable[tuple[str, str]]) -> bytes:
    """Header lines, each ending in CRLF; raises ValueError for an invalid name or value."""
    return b"".join(_encode_fields(headers))


def serialize_request(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The bytes of an HTTP/1.1 request head; raises ValueError for invalid input."""
    if not _TOKEN_STR.fullmatch(method):
        raise ValueError(f"invalid method: {method!r}")
    if not _TARGET_STR.fullmatch(target):
        raise ValueError(f"invalid request target: {target!r}")
    head = [f"{method} {target} HTTP/1.1\r\n".encode("ascii"), *_encode_fields(headers), b"\r\n"]
    return b"".join(head)


def serialize_response(
    status: int,
    headers: Iterable[tuple[str, str]],
    body: bytes = b"",
    reason: str | None = None,
) -> bytes:
    """The bytes of an HTTP/1.1 response; Content-Length is added except for 1xx, 204 and 304."""
    if not 100 <= status <= 599:
        raise ValueError(f"invalid status code: {status}")
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    if not _FIELD_VALUE_STR.fullmatch(reason) or "\t" in reason:
        raise ValueError(f"invalid reason phrase: {reason!r}")
    fields = list(headers)
    if any(name.lower() == "content-length" for name, _ in fields):
        raise ValueError("Content-Length is computed by serialize_response; do not pass it")
    if 100 <= status < 200 or status in (204, 304):
        # RFC 9110 §8.6 / §6.4.1: these responses carry no content and no Content-Length.
        if body:
            raise ValueError(f"a {status} response cannot have a body")
    else:
        fields.append(("Content-Length", str(len(body))))
    status_line = f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")
    return b"".join([status_line, *_encode_fields(fields), b"\r\n", body])


# The compiled twin when built (see frames.py); an older build leaves the pure one in place.
split_head = getattr(speedups, "split_head", split_head_python)

# parse_head's C twin is a module of its own (src/wskit/_httpparse.c), imported here only.
parse_head: Callable[[bytes | bytearray, int, int, int], ParsedHead | None]
parse_response_head: Callable[[bytes | bytearray, int, int, int], ParsedResponseHead | None]
try:
    from wskit._httpparse import parse_head
except ImportError:  # not built: the pure twin does the work
    parse_head = parse_head_python
try:
    from wskit._httpparse import parse_response_head
except ImportError:  # not built, or built before the client's twin: the pure one
    parse_response_head = parse_response_head_python
