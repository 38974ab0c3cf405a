"""Fuzzing profiles: the suite runs a bounded slice; ``make fuzz`` (profile ``long``) runs each
target for ``FUZZ_SECONDS`` and keeps new inputs in tests/fuzz/corpus."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from targets import CORPUS

# The long profile keeps Hypothesis' own failing examples beside the corpus, so a failure
# found by ``make fuzz`` is replayed first by the next run.
settings.register_profile(
    "long", max_examples=300, deadline=None,
    database=DirectoryBasedExampleDatabase(str(CORPUS / "hypothesis")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
