"""The RFC 6455 §4 opening handshake: the client's request and checks, the server's validation."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .errors import InvalidHandshake, NegotiationError
from .extensions import Extension, ExtensionFactory, ExtensionParams
from .http import (
    Headers,
    Request,
    Response,
    serialize_fields,
    serialize_request,
    serialize_response,
)
from .masking import generate_mask

__all__ = [
    "GUID",
    "ClientHandshake",
    "HandshakeResult",
    "accept_key",
    "accept_request",
    "error_response",
    "generate_key",
    "parse_extension_header",
    "parse_token_list",
    "reject",
    "serialize_extension_header",
    "validate_request",
]

#: RFC 6455 §1.3: the GUID appended to the key to compute Sec-WebSocket-Accept.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OWS = re.compile(r"[ \t]*")
# RFC 9110 §5.6.4: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE.
_QUOTED = re.compile(r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
# RFC 9110 §7.8: protocol = protocol-name ["/" protocol-version]; only Upgrade allows the slash.
_PROTOCOL = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:/[!#$%&'*+\-.^_`|~0-9A-Za-z]+)?")

# RFC 6455 §4.2.1 item 5: what base64.b64decode(key, validate=True) decodes to 16 bytes (22
# characters of the alphabet, the last one's low bits unused, and the padding).
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")

# Header fields the handshake writes itself; a caller's extra_headers may not repeat them.
_CLIENT_RESERVED = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
)
_CLIENT_RESERVED_ORIGIN = _CLIENT_RESERVED | {"origin"}
_SERVER_RESERVED = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "content-length",
    }
)


def generate_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64-encoded (RFC 6455 §4.1)."""
    # RFC 6455 §4.1: the nonce MUST be randomly selected for each connection. The bytes come
    # from the OS's CSPRNG as the masking keys do (masking.generate_mask: a pool refilled by
    # one getrandom() per 1,024 keys), not a system call per connection.
    nonce = b"".join((generate_mask(), generate_mask(), generate_mask(), generate_mask()))
    return binascii.b2a_base64(nonce)[:-1].decode("ascii")  # (what b64encode gives)


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for ``key`` (RFC 6455 §4.2.2 step 5.4)."""
    return _accept_bytes(key).decode("ascii")


def _accept_bytes(key: str) -> bytes:
    digest = hashlib.sha1((key + GUID).encode("ascii"), usedforsecurity=False).digest()
    return binascii.b2a_base64(digest, newline=False)  # what base64.b64encode calls


# ----------------------------------------------------------------------------------------------
# Header grammars


def _split_list(values: list[str], element: re.Pattern[str], what: str) -> list[str]:
    """The elements of a comma-separated list spread over several fields, empty ones skipped."""
    result = []
    for value in values:
        # RFC 9110 §5.6.1: recipients accept empty list elements ("a, , b") and surrounding OWS.
        for item in value.split(","):
            item = item.strip(" \t")
            if not item:
                continue
            if not element.fullmatch(item):
                raise InvalidHandshake(f"malformed {what}: invalid element {item!r} in {value!r}")
            result.append(item)
    return result


def parse_token_list(values: list[str]) -> list[str]:
    """The tokens of comma-separated header values (Connection, Sec-WebSocket-Protocol), in order.

    Case is preserved; empty elements are skipped; a non-token element raises InvalidHandshake.
    """
    return _split_list(values, _TOKEN, "token list")


def parse_extension_header(values: list[str]) -> list[ExtensionParams]:
    """The extensions of Sec-WebSocket-Extensions fields, in order (RFC 6455 §9.1 grammar).

    A quoted parameter value is unescaped and must then be a token (RFC 6455 §9.1). Malformed
    syntax raises InvalidHandshake (400).
    """
    result: list[ExtensionParams] = []
    for value in values:
        found = _parse_extension_field(value, result)
        if not found:
            # RFC 6455 §9.1: extension-list = 1#extension, so each field holds at least one.
            raise InvalidHandshake(f"malformed Sec-WebSocket-Extensions: no extension in {value!r}")
    return result


def _parse_extension_field(value: str, out: list[ExtensionParams]) -> int:
    def fail(why: str) -> InvalidHandshake:
        return InvalidHandshake(f"malformed Sec-WebSocket-Extensions {value!r}: {why} at {pos}")

    def skip_ows(at: int) -> int:
        match = _OWS.match(value, at)
        assert match is not None  # [ \t]* always matches
        return match.end()

    def token(at: int, what: str) -> tuple[str, int]:
        match = _TOKEN.match(value, at)
        if match is None:
            raise fail(f"expected {what}")
        return match.group(), match.end()

    found = 0
    pos = 0
    end = len(value)
    while True:
        pos = skip_ows(pos)
        if pos < end and value[pos] == ",":  # an empty list element
            pos += 1
            continue
        if pos == end:
            return found
        name, pos = token(pos, "an extension name")
        params: list[tuple[str, str | None]] = []
        pos = skip_ows(pos)
        while pos < end and value[pos] == ";":
            pos = skip_ows(pos + 1)
            param, pos = token(pos, "a parameter name")
            param_value: str | None = None
            pos = skip_ows(pos)
            if pos < end and value[pos] == "=":
                pos = skip_ows(pos + 1)
                quoted = _QUOTED.match(value, pos)
                if quoted is not None:
                    param_value = _QUOTED_PAIR.sub(r"\1", quoted.group(1))
                    # RFC 6455 §9.1: an unescaped quoted value MUST conform to the token rule.
                    if not _TOKEN.fullmatch(param_value):
                        raise fail(f"quoted value of {param!r} is not a token")
                    pos = quoted.end()
                else:
                    param_value, pos = token(pos, f"a value for {param!r}")
                pos = skip_ows(pos)
            params.append((param, param_value))
        out.append((name, params))
        found += 1
        if pos == end:
            return found
        if value[pos] != ",":
            raise fail("expected ',' or ';'")
        pos += 1


def serialize_extension_header(extensions: list[ExtensionParams]) -> str:
    """The Sec-WebSocket-Extensions value for ``extensions``; raises ValueError for non-tokens."""
    parts = []
    for name, params in extensions:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid extension name: {name!r}")
        items = [name]
        for param, value in params:
            if not _TOKEN.fullmatch(param):
                raise ValueError(f"invalid parameter name for {name}: {param!r}")
            if value is None:
                items.append(param)
            elif _TOKEN.fullmatch(value):
                # RFC 6455 §9.1: a value is a token (quoting cannot carry anything else).
                items.append(f"{param}={value}")
            else:
                raise ValueError(f"invalid value for {name}; {param}: {value!r} is not a token")
        parts.append("; ".join(items))
    return ", ".join(parts)


def _check_extra(
    headers: Iterable[tuple[str, str]], reserved: frozenset[str]
) -> list[tuple[str, str]]:
    fields = list(headers)
    for name, _ in fields:
        if name.lower() in reserved:
            raise ValueError(f"extra header {name!r} is set by the handshake itself")
    return fields


# ----------------------------------------------------------------------------------------------
# Results


@dataclass
class HandshakeResult:
    """What the handshake settled: the subprotocol, the extensions in order, the peer's headers."""

    subprotocol: str | None
    extensions: list[Extension]
    headers: Headers


# ----------------------------------------------------------------------------------------------
# Client side


class ClientHandshake:
    """The client's half: build the request (``request_bytes``), then check the response.

    ``host`` is the Host field value, with port and IPv6 brackets already applied. Invalid
    arguments raise ValueError at once (a local mistake).
    """

    def __init__(
        self,
        host: str,
        target: str,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[ExtensionFactory] = (),
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        if subprotocols:
            for protocol in subprotocols:
                if not _TOKEN.fullmatch(protocol):
                    # RFC 6455 §4.1: each subprotocol is a token.
                    raise ValueError(f"invalid subprotocol: {protocol!r}")
            if len(set(subprotocols)) != len(subprotocols):
                # RFC 6455 §4.1: the elements MUST be unique strings.
                raise ValueError(f"duplicate subprotocols: {list(subprotocols)!r}")
        self.host = host
        self.target = target
        self.origin = origin
        self.subprotocols = list(subprotocols)
        self.extensions = list(extensions)
        extra = list(extra_headers)
        if extra:
            reserved = _CLIENT_RESERVED if origin is None else _CLIENT_RESERVED_ORIGIN
            extra = _check_extra(extra, reserved)
        self.extra_headers = extra
        #: The Sec-WebSocket-Key of this attempt (RFC 6455 §4.1: fresh for each connection).
        self.key = generate_key()

    def request_bytes(self) -> bytes:
        """The bytes of the opening handshake request (RFC 6455 §4.1)."""
        offers = None
        if self.extensions:
            offers = serialize_extension_header([factory.offer() for factory in self.extensions])
        parts = (self.host, self.target, self.origin, tuple(self.subprotocols), offers,
                 tuple(self.extra_headers))
        try:
            before, after = _request_around_key(*parts)
        except TypeError:  # a value that cannot be a cache key: serialised (or refused) as is
            before, after = _request_around_key.__wrapped__(*parts)
        # Only the key differs between the requests of one URL and options (RFC 6455 §4.1: a
        # fresh nonce per connection); it is base64, always a valid field value.
        return b"".join((before, self.key.encode("ascii"), after))

    def receive_response(self, resp: Response) -> HandshakeResult:
        """Check the server's response (RFC 6455 §4.1, client rules 1-6); raise if it fails."""
        status = resp.status

        def fail(reason: str) -> InvalidHandshake:
            return InvalidHandshake(reason, status=status)

        if status != 101:
            # RFC 6455 §4.1 rule 1: anything but 101 means the upgrade did not happen.
            answer = f"HTTP {status} {resp.reason}".rstrip()
            if 200 <= status < 300:
                reason = (f"the server answered {answer} instead of 101 Switching Protocols: "
                          "not a WebSocket endpoint (a plain HTTP server, or the wrong path?)")
            else:
                reason = f"server rejected WebSocket connection: {answer}" + _explanation(resp)
            raise InvalidHandshake(reason, status=status, headers=resp.headers.raw_items())
        if resp.version != "HTTP/1.1":
            raise fail(f"101 response with unsupported version {resp.version}")
        headers = resp.headers
        fields = headers.by_name()
        get = fields.get
        # The common response in one pass over its index: each field once, as the rules
        # below want it, no extension and no subprotocol; anything else goes through them.
        upgrade = get("upgrade")
        connection = get("connection")
        accept = get("sec-websocket-accept")
        if (upgrade is not None and len(upgrade) == 1 and upgrade[0].lower() == "websocket"
                and connection is not None and len(connection) == 1
                and connection[0].lower() == "upgrade"
                and accept is not None and len(accept) == 1 and accept[0] == accept_key(self.key)
                and "sec-websocket-extensions" not in fields
                and "sec-websocket-protocol" not in fields):
            return HandshakeResult(None, [], headers)
        upgrade = headers.get_all("Upgrade")
        # RFC 6455 §4.1 rule 2: Upgrade MUST be a case-insensitive match for "websocket".
        if len(upgrade) != 1 or upgrade[0].strip(" \t").lower() != "websocket":
            shown = ", ".join(upgrade) if upgrade else "missing"
            raise fail(f"invalid Upgrade header in response: {shown}")
        connection = _tokens(headers.get_all("Connection"), "Connection", status)
        # RFC 6455 §4.1 rule 3: Connection MUST contain the token "Upgrade" (any case).
        if "upgrade" not in (token.lower() for token in connection):
            shown = ", ".join(headers.get_all("Connection")) or "missing"
            raise fail(f"invalid Connection header in response: {shown}")
        accept = headers.get_all("Sec-WebSocket-Accept")
        # RFC 6455 §4.1 rule 4: Sec-WebSocket-Accept MUST be the hash of our key.
        if len(accept) != 1:
            raise fail(f"expected one Sec-WebSocket-Accept header, got {len(accept)}")
        if accept[0].strip(" \t") != accept_key(self.key):
            raise fail(f"Sec-WebSocket-Accept mismatch: {accept[0]!r}")
        extensions = self._negotiate_extensions(headers, status)
        subprotocol = self._negotiate_subprotocol(headers, status)
        return HandshakeResult(subprotocol, extensions, headers)

    def _negotiate_extensions(self, headers: Headers, status: int) -> list[Extension]:
        try:
            accepted = parse_extension_header(headers.get_all("Sec-WebSocket-Extensions"))
        except InvalidHandshake as exc:
            raise NegotiationError(exc.reason, status=status) from None
        result: list[Extension] = []
        seen: set[str] = set()
        for name, params in accepted:
            if name in seen:
                raise NegotiationError(f"extension {name} appears twice in the response", status)
            seen.add(name)
            candidates = [factory for factory in self.extensions if factory.name == name]
            if not candidates:
                # RFC 6455 §4.1 rule 5: an extension we did not offer fails the connection.
                raise NegotiationError(f"server accepted extension {name}, not offered", status)
            # Several offers of one extension (a fallback list): the first that fits wins.
            error: NegotiationError | None = None
            for factory in candidates:
                try:
                    result.append(factory.accept_response(params))
                except NegotiationError as exc:
                    error = exc
                else:
                    break
            else:
                assert error is not None
                raise error
        return result

    def _negotiate_subprotocol(self, headers: Headers, status: int) -> str | None:
        protocols = _tokens(
            headers.get_all("Sec-WebSocket-Protocol"), "Sec-WebSocket-Protocol", status
        )
        if not protocols:
            return None
        # RFC 6455 §4.1 rule 6: exactly one subprotocol, and one the client offered.
        if len(protocols) > 1:
            raise NegotiationError(f"server selected several subprotocols: {protocols}", status)
        (protocol,) = protocols
        if protocol not in self.subprotocols:
            raise NegotiationError(f"server selected subprotocol {protocol}, not offered", status)
        return protocol


@lru_cache(maxsize=256)
def _request_around_key(
    host: str, target: str, origin: str | None, subprotocols: tuple[str, ...],
    extensions: str | None, extra_headers: tuple[tuple[str, str], ...],
) -> tuple[bytes, bytes]:
    """The request head of ``request_bytes`` before and after its Sec-WebSocket-Key value.

    Built and checked once for each URL and set of options (the same ValueError as
    serialising it whole, since each field is checked apart, in the same order), instead of
    some 40,000 instructions of serialising per connection.
    """
    before = serialize_request("GET", target, [
        ("Host", host),  # RFC 6455 §4.1 rule 4
        ("Upgrade", "websocket"),  # RFC 6455 §4.1 rule 5
        ("Connection", "Upgrade"),  # RFC 6455 §4.1 rule 6
    ])
    fields = [("Sec-WebSocket-Version", "13")]  # RFC 6455 §4.1 rule 9
    if origin is not None:
        fields.append(("Origin", origin))
    if subprotocols:
        fields.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    if extensions is not None:
        fields.append(("Sec-WebSocket-Extensions", extensions))
    fields.extend(extra_headers)
    # RFC 6455 §4.1 rule 1: the method MUST be GET and the version at least HTTP/1.1; rule
    # 7: the key comes between these two parts.
    return (before[:-2] + b"Sec-WebSocket-Key: ",
            b"\r\n" + serialize_fields(fields) + b"\r\n")


def _explanation(resp: Response) -> str:
    """The first line of a plain-text body, cut short, to add to the error; never a page of
    HTML or anything else that is not meant to be read as one line."""
    kind = (resp.headers.get("Content-Type") or "text/plain").split(";")[0].strip().lower()
    if kind != "text/plain":
        return ""
    lines = resp.body[:200].decode("utf-8", errors="replace").strip().splitlines()
    if not lines:
        return ""
    line = lines[0].strip()
    return f": {line[:100]}…" if len(line) > 100 or len(lines) > 1 else f": {line}"


def _tokens(values: list[str], what: str, status: int) -> list[str]:
    try:
        return parse_token_list(values)
    except InvalidHandshake:
        raise InvalidHandshake(f"malformed {what} header: {', '.join(values)!r}", status) from None


# ----------------------------------------------------------------------------------------------
# Server side


def _single(req: Request, name: str, required: bool = True) -> str | None:
    values = req.headers.get_all(name)
    if len(values) > 1:
        raise InvalidHandshake(f"duplicate {name} header")
    if not values:
        if required:
            raise InvalidHandshake(f"missing {name} header")
        return None
    return values[0]


def validate_request(req: Request) -> str:
    """Check a client's opening handshake (RFC 6455 §4.2.1) and return its Sec-WebSocket-Key.

    Statuses: 405 (with ``Allow: GET``) for another method, 505 for another HTTP version,
    426 (with the header the client needs) without ``Upgrade: websocket`` or with another
    Sec-WebSocket-Version, 400 for anything else malformed.
    """
    if req.method != "GET":
        # RFC 6455 §4.2.1 item 1: the method MUST be GET; 405 tells which one is allowed.
        raise InvalidHandshake(
            f"method must be GET, not {req.method}", status=405, headers=[("Allow", "GET")]
        )
    if req.version != "HTTP/1.1":
        # RFC 6455 §4.2.1 item 1: HTTP/1.1 or higher (505 as the parser answers too).
        raise InvalidHandshake(f"HTTP version must be HTTP/1.1, not {req.version}", status=505)
    fields = req.headers.by_name()
    get = fields.get
    # The common request in one pass over its index: each field once, well-formed; anything
    # else (absent, repeated, listed with other options) goes through the checks below,
    # which accept or refuse it with the exact status.
    hosts = get("host")
    upgrade = get("upgrade")
    connection = get("connection")
    key_values = get("sec-websocket-key")
    if (hosts is not None and len(hosts) == 1 and hosts[0]
            and upgrade is not None and len(upgrade) == 1 and upgrade[0].lower() == "websocket"
            and connection is not None and len(connection) == 1
            and connection[0].lower() == "upgrade"
            and get("sec-websocket-version") == ["13"]
            and key_values is not None and len(key_values) == 1
            and _KEY.fullmatch(key_values[0]) is not None
            and "transfer-encoding" not in fields
            and get("content-length") in (None, ["0"])):
        return key_values[0]
    host = _single(req, "Host")
    if not host:
        # RFC 6455 §4.2.1 item 2 and RFC 9112 §3.2: exactly one non-empty Host.
        raise InvalidHandshake("empty Host header")
    content_length = _single(req, "Content-Length", required=False)
    if "Transfer-Encoding" in req.headers or content_length not in (None, "0"):
        # What follows the head is WebSocket data, so a request body cannot be told apart.
        raise InvalidHandshake("the upgrade request must not have a body")
    upgrade_values = req.headers.get_all("Upgrade")
    # The common field, one "websocket" (any case), passes every check below: taken at once.
    if (len(upgrade_values) != 1 or upgrade_values[0].lower() != "websocket") and (
        "websocket" not in (protocol.lower() for protocol in _split_list(
            upgrade_values, _PROTOCOL, "Upgrade header"))):
        # RFC 6455 §4.2.1 item 3; 426 names the protocol to upgrade to (RFC 9110 §15.5.22).
        shown = ", ".join(upgrade_values) if upgrade_values else "missing"
        raise InvalidHandshake(
            f"Upgrade header must include websocket (got {shown})",
            status=426,
            headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")],
        )
    connection_values = req.headers.get_all("Connection")
    if (len(connection_values) != 1 or connection_values[0].lower() != "upgrade") and (
        "upgrade" not in (option.lower() for option in _split_list(
            connection_values, _TOKEN, "Connection header"))):
        # RFC 6455 §4.2.1 item 4: Connection MUST include the token "Upgrade".
        shown = ", ".join(connection_values) if connection_values else "missing"
        raise InvalidHandshake(f"Connection header must include Upgrade (got {shown})")
    version = req.headers.get_all("Sec-WebSocket-Version")
    if len(version) != 1 or version[0] != "13":
        # RFC 6455 §4.2.1 item 6 and §4.4: answer 426 with the version we speak.
        shown = ", ".join(version) if version else "missing"
        raise InvalidHandshake(
            f"unsupported Sec-WebSocket-Version (got {shown}; this server speaks 13)",
            status=426,
            headers=[("Sec-WebSocket-Version", "13")],
        )
    key = _single(req, "Sec-WebSocket-Key")
    assert key is not None
    try:
        # RFC 6455 §4.2.1 item 5: the key MUST decode to exactly 16 bytes.
        raw = base64.b64decode(key, validate=True)
    except ValueError:  # binascii.Error, or a key that is not ASCII (it was a 500)
        raw = b""
    if len(raw) != 16:
        raise InvalidHandshake(f"invalid Sec-WebSocket-Key {key!r}: not 16 bytes in base64")
    return key


def accept_request(
    req: Request,
    *,
    subprotocols: Sequence[str] = (),
    extensions: Sequence[ExtensionFactory] = (),
    select_subprotocol: Callable[[list[str]], str | None] | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> tuple[bytes, HandshakeResult]:
    """Validate ``req`` and build the 101 response (RFC 6455 §4.2.2).

    Returns the response bytes and the result (its headers are the request's). Raises
    InvalidHandshake for a bad request (answer it with ``error_response``) and ValueError when
    ``select_subprotocol`` picks a subprotocol the client did not offer.
    """
    key = validate_request(req)
    extra = _check_extra(extra_headers, _SERVER_RESERVED) if extra_headers else []
    fields_by_name = req.headers.by_name()
    values = fields_by_name.get("sec-websocket-protocol")
    offered = parse_token_list(values) if values else []
    if select_subprotocol is not None:
        subprotocol = select_subprotocol(offered)
    elif offered:
        subprotocol = next((p for p in subprotocols if p in offered), None)
    else:
        subprotocol = None
    if subprotocol is not None and subprotocol not in offered:
        # RFC 6455 §4.2.2 step 5.4: the selected value MUST be one the client offered.
        raise ValueError(f"selected subprotocol {subprotocol!r} was not offered: {offered}")

    values = fields_by_name.get("sec-websocket-extensions")
    offers = parse_extension_header(values) if values else []
    accepted_params: list[ExtensionParams] = []
    accepted: list[Extension] = []
    for factory in extensions if offers else ():
        if any(name == factory.name for name, _ in accepted_params):
            continue  # at most one accepted extension per name
        candidates = [params for name, params in offers if name == factory.name]
        if not candidates:
            continue
        outcome = factory.accept_offer(candidates)
        if outcome is None:
            continue
        params, extension = outcome
        accepted_params.append((factory.name, params))
        accepted.append(extension)

    fields = []
    if subprotocol is not None:
        fields.append(("Sec-WebSocket-Protocol", subprotocol))
    if accepted_params:
        fields.append(("Sec-WebSocket-Extensions", serialize_extension_header(accepted_params)))
    fields.extend(extra)
    # The fixed part is built once (_HEAD_101); only the fields that vary are checked here.
    response = b"".join((
        _HEAD_101, _accept_bytes(key), b"\r\n",  # RFC 6455 §4.2.2 step 5.4
        serialize_fields(fields) if fields else b"", b"\r\n",
    ))
    return response, HandshakeResult(subprotocol, accepted, req.headers)


#: Every 101 response up to the Sec-WebSocket-Accept value (RFC 6455 §4.2.2 step 5).
_HEAD_101 = serialize_response(101, [("Upgrade", "websocket"), ("Connection", "Upgrade")])[
    :-2
] + b"Sec-WebSocket-Accept: "


def reject(status: int, body: str | bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A complete HTTP response refusing the upgrade, with ``Connection: close``.

    A ``str`` body is sent as UTF-8 ``text/plain`` (also the type given to a bytes body unless
    ``headers`` names one). A Connection header in ``headers`` is merged with ``close``.
    """
    data = body.encode("utf-8") if isinstance(body, str) else body
    fields: list[tuple[str, str]] = []
    options: list[str] = []
    for name, value in headers:
        if name.lower() == "connection":
            options.extend(option.strip() for option in value.split(",") if option.strip())
        else:
            fields.append((name, value))
    if "close" not in (option.lower() for option in options):
        options.append("close")
    fields.append(("Connection", ", ".join(options)))
    if data and not any(name.lower() == "content-type" for name, _ in fields):
        fields.append(("Content-Type", "text/plain; charset=utf-8"))
    return serialize_response(status, fields, data)


def error_response(exc: InvalidHandshake) -> bytes:
    """The response to a failed handshake: ``reject(exc.status, exc.reason, exc.headers)``."""
    return reject(exc.status, exc.reason, exc.headers)
