"""UTF-8 sequences for the conformance suite (RFC 3629 §4, Unicode Table 3-7), and a validator.

The tables follow the kinds of Autobahn section 6 (which follows Markus Kuhn's decoder
stress test): boundaries of each sequence length, noncharacters (valid), overlong forms,
UTF-16 surrogates, code points above U+10FFFF, stray continuation bytes, lonely start bytes,
truncated sequences and impossible bytes. ``first_invalid`` says, independently of Python's
decoder, at which byte a sequence stops being a prefix of valid UTF-8.
"""

from __future__ import annotations

__all__ = ["INVALID", "VALID", "first_invalid"]


def _c(cp: int) -> bytes:
    return chr(cp).encode("utf-8", "surrogatepass")


KOSME = "κόσμε".encode()

#: Well-formed UTF-8: echoed intact (noncharacters are valid UTF-8 too).
VALID: dict[str, bytes] = {
    "empty": b"",
    "ascii": b"Hello, world!",
    "latin-1-range": "Hello-µ@ßöäüàá-UTF-8!!".encode(),
    "kosme": KOSME,
    "first-1-byte-U+0000": _c(0x0),
    "first-2-byte-U+0080": _c(0x80),
    "first-3-byte-U+0800": _c(0x800),
    "first-4-byte-U+10000": _c(0x10000),
    "last-1-byte-U+007F": _c(0x7F),
    "last-2-byte-U+07FF": _c(0x7FF),
    "last-3-byte-U+FFFF": _c(0xFFFF),
    "last-4-byte-U+10FFFF": _c(0x10FFFF),
    "before-surrogates-U+D7FF": _c(0xD7FF),
    "after-surrogates-U+E000": _c(0xE000),
    "replacement-char-U+FFFD": _c(0xFFFD),
    "noncharacter-U+FFFE": _c(0xFFFE),
    "noncharacter-U+FDD0": _c(0xFDD0),
    "noncharacter-U+FDEF": _c(0xFDEF),
    "noncharacter-U+1FFFF": _c(0x1FFFF),
    "noncharacter-U+10FFFE": _c(0x10FFFE),
    "emoji-U+1F600": _c(0x1F600),
    "musical-symbol-U+1D11E": _c(0x1D11E),
    "mixed-1-to-4-bytes": "a é € 😀 𐍈 ✓ z".encode(),
    "all-4-byte-leads": b"".join(_c(cp) for cp in (0x10000, 0x40000, 0x80000, 0xC0000, 0x100000)),
}

#: Ill-formed UTF-8: the peer's text fails the connection with 1007.
INVALID: dict[str, bytes] = {
    # Autobahn 6.3: "κόσμε" + a surrogate + "edited"; 6.4.1: a code point above U+10FFFF.
    "kosme-surrogate-edited": KOSME + b"\xed\xa0\x80edited",
    "kosme-U+110000-edited": KOSME + b"\xf4\x90\x80\x80edited",
    # Overlong forms (of "/" and of the largest code point of the shorter length, and of NUL).
    "overlong-2-byte-slash": b"\xc0\xaf",
    "overlong-3-byte-slash": b"\xe0\x80\xaf",
    "overlong-4-byte-slash": b"\xf0\x80\x80\xaf",
    "overlong-5-byte-slash": b"\xf8\x80\x80\x80\xaf",
    "overlong-6-byte-slash": b"\xfc\x80\x80\x80\x80\xaf",
    "overlong-max-2-byte": b"\xc1\xbf",
    "overlong-max-3-byte": b"\xe0\x9f\xbf",
    "overlong-max-4-byte": b"\xf0\x8f\xbf\xbf",
    "overlong-nul-2-byte": b"\xc0\x80",
    "overlong-nul-3-byte": b"\xe0\x80\x80",
    "overlong-nul-4-byte": b"\xf0\x80\x80\x80",
    # UTF-16 surrogates, single and paired.
    "surrogate-U+D800": b"\xed\xa0\x80",
    "surrogate-U+DB7F": b"\xed\xad\xbf",
    "surrogate-U+DB80": b"\xed\xae\x80",
    "surrogate-U+DBFF": b"\xed\xaf\xbf",
    "surrogate-U+DC00": b"\xed\xb0\x80",
    "surrogate-U+DF80": b"\xed\xbe\x80",
    "surrogate-U+DFFF": b"\xed\xbf\xbf",
    "surrogate-pair-D800-DC00": b"\xed\xa0\x80\xed\xb0\x80",
    "surrogate-pair-DBFF-DFFF": b"\xed\xaf\xbf\xed\xbf\xbf",
    "surrogate-after-text": b"Hello \xed\xa0\x80 world",
    # Beyond U+10FFFF.
    "U+110000": b"\xf4\x90\x80\x80",
    "U+13FFFF": b"\xf4\xbf\xbf\xbf",
    "lead-F5": b"\xf5\x80\x80\x80",
    "lead-F7": b"\xf7\xbf\xbf\xbf",
    "5-byte-form": b"\xf8\x88\x80\x80\x80",
    "5-byte-max": b"\xfb\xbf\xbf\xbf\xbf",
    "6-byte-form": b"\xfc\x84\x80\x80\x80\x80",
    "6-byte-max": b"\xfd\xbf\xbf\xbf\xbf\xbf",
    # Stray continuation bytes.
    "continuation-80": b"\x80",
    "continuation-BF": b"\xbf",
    "continuations-2": b"\x80\xbf",
    "continuations-3": b"\x80\xbf\x80",
    "continuation-after-ascii": b"abc\x80def",
    "continuation-after-complete-2-byte": b"\xc3\xa9\xa9",
    "all-64-continuations": bytes(range(0x80, 0xC0)),
    # Lonely start bytes followed by a space.
    "lonely-2-byte-leads": b"".join(bytes((b, 0x20)) for b in range(0xC0, 0xE0)),
    "lonely-3-byte-leads": b"".join(bytes((b, 0x20)) for b in range(0xE0, 0xF0)),
    "lonely-4-byte-leads": b"".join(bytes((b, 0x20)) for b in range(0xF0, 0xF8)),
    # A sequence cut short before another character.
    "missing-last-byte-2-byte": b"\xc2A",
    "missing-last-byte-3-byte": b"\xe1\x80A",
    "missing-last-byte-4-byte": b"\xf0\x90\x80A",
    "incomplete-sequences-concatenated": (
        b"\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80"
        b"\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf"),
    # Impossible bytes.
    "byte-FE": b"\xfe",
    "byte-FF": b"\xff",
    "bytes-FE-FE-FF-FF": b"\xfe\xfe\xff\xff",
    "ascii-then-FF": b"Hello\xff",
    # Truncated at the very end: invalid only once the message ends.
    "truncated-2-byte": b"\xc2",
    "truncated-3-byte-after-1": b"\xe1",
    "truncated-3-byte-after-2": b"\xe1\x80",
    "truncated-4-byte-after-3": b"\xf0\x90\x80",
    "truncated-U+10FFFF": b"\xf4\x8f\xbf",
    "truncated-before-surrogate-range": b"\xed\x9f",
    "kosme-truncated": KOSME + b"\xe1\xbd",
}

# Unicode Table 3-7: the allowed range of the second byte for each lead byte, then 80..BF.
_SECOND: dict[int, tuple[int, int]] = {}
_LENGTH: dict[int, int] = {}
for _b in range(0xC2, 0xE0):
    _SECOND[_b], _LENGTH[_b] = (0x80, 0xBF), 2
for _b in range(0xE0, 0xF0):
    _SECOND[_b], _LENGTH[_b] = (0x80, 0xBF), 3
for _b in range(0xF0, 0xF5):
    _SECOND[_b], _LENGTH[_b] = (0x80, 0xBF), 4
_SECOND[0xE0] = (0xA0, 0xBF)
_SECOND[0xED] = (0x80, 0x9F)
_SECOND[0xF0] = (0x90, 0xBF)
_SECOND[0xF4] = (0x80, 0x8F)


def first_invalid(data: bytes) -> int | None:
    """Index of the first byte after which ``data`` can no longer start valid UTF-8.

    None when ``data`` is valid UTF-8 or a prefix of it (truncated at the end).
    """
    i, n = 0, len(data)
    while i < n:
        lead = data[i]
        if lead < 0x80:
            i += 1
            continue
        if lead not in _LENGTH:
            return i
        lo, hi = _SECOND[lead]
        for k in range(1, _LENGTH[lead]):
            if i + k >= n:
                return None
            byte = data[i + k]
            if not (lo <= byte <= hi if k == 1 else 0x80 <= byte <= 0xBF):
                return i + k
        i += _LENGTH[lead]
    return None


def _check_tables() -> None:
    for name, data in VALID.items():
        assert first_invalid(data) is None, name
        data.decode()
    for name, data in INVALID.items():
        truncated = name.startswith(("truncated", "kosme-truncated"))
        assert (first_invalid(data) is None) == truncated, name


_check_tables()
