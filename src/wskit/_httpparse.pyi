"""The C twins of ``wskit.core.http``'s one-step head parses (src/wskit/_httpparse.c)."""

def parse_head(
    data: bytes | bytearray, max_line_length: int, max_headers: int, max_header_bytes: int, /
) -> tuple[str, str, list[tuple[str, str]], dict[str, list[str]], int] | None:
    """(method, target, fields, index, end) of a complete, valid request head at the start of
    ``data``, or None (RFC 9112 §2-§5, RFC 6455 §4.1)."""

def parse_response_head(
    data: bytes | bytearray, max_line_length: int, max_headers: int, max_header_bytes: int, /
) -> tuple[str, int, str, list[tuple[str, str]], dict[str, list[str]], int] | None:
    """(version, status, reason, fields, index, end) of a complete, valid response head at the
    start of ``data``, or None (RFC 9112 §2-§5)."""
