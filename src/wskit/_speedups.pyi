"""Type stub of the optional C speed-ups; each mirrors a pure-Python function in wskit.core."""

def apply_mask(
    data: bytes | bytearray | memoryview, key: bytes | bytearray | memoryview, /
) -> bytes:
    """Return ``data`` XOR-ed with the 4-byte masking ``key`` repeated (RFC 6455 §5.3)."""
