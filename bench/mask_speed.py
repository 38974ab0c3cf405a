"""Time payload masking: the pure-Python and C versions side by side, at frame sizes that matter."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

try:
    from wskit.core import masking
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from wskit.core import masking

SIZES = [
    ("32 B", 32),
    ("1 KiB", 1 << 10),
    ("64 KiB", 1 << 16),
    ("1 MiB", 1 << 20),
    ("16 MiB", 1 << 24),
]


def measure(fn: Callable[[bytes, bytes], bytes], data: bytes, key: bytes, budget: float) -> float:
    """Return the best seconds per call over 5 rounds of about ``budget`` seconds each."""
    timer = timeit.Timer(lambda: fn(data, key))
    number, _ = timer.autorange()  # calls per round of at least 0.2 s
    number = max(1, int(number * budget / 0.2))
    return min(timer.repeat(repeat=5, number=number)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=0.2, help="seconds per timing round")
    args = parser.parse_args()

    impls: list[tuple[str, Callable[[bytes, bytes], bytes]]] = [
        ("python", masking.apply_mask_python)
    ]
    if masking.HAS_SPEEDUPS:
        impls.append(("c", masking.apply_mask))
    else:
        print("wskit._speedups is not built: timing the pure-Python version only")
    print(f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}")
    print(f"{'size':>8} {'impl':>7} {'us/call':>12} {'MB/s':>10}")
    key = os.urandom(4)
    for label, size in SIZES:
        data = os.urandom(size)
        for name, fn in impls:
            seconds = measure(fn, data, key, args.budget)
            print(f"{label:>8} {name:>7} {seconds * 1e6:12.3f} {size / seconds / 1e6:10.1f}")


if __name__ == "__main__":
    main()
