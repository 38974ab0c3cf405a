"""The C twin of ``wskit.core.http.parse_head_python`` (src/wskit/_httpparse.c)."""

def parse_head(
    data: bytes | bytearray, max_line_length: int, max_headers: int, max_header_bytes: int, /
) -> tuple[str, str, list[tuple[str, str]], dict[str, list[str]], int] | None:
    """(method, target, fields, index, end) of a complete, valid request head at the start of
    ``data``, or None (RFC 9112 §2-§5, RFC 6455 §4.1)."""
