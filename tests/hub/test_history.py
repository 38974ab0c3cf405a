"""Topic history: the policy (which topics keep how much), the in-memory ring, recovery plans."""

from __future__ import annotations

import pytest

from wskit.hub.history import (
    HistoryPolicy,
    MemoryHistory,
    Publication,
    check_since,
    plan_recovery,
    unchanged,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestPolicy:
    def test_a_number_applies_to_every_topic(self) -> None:
        policy = HistoryPolicy(50, 30.0)
        assert policy
        assert policy.rule("anything") == (50, 30.0)

    def test_no_history(self) -> None:
        policy = HistoryPolicy(None)
        assert not policy
        assert policy.rule("chat") is None

    def test_patterns_first_match_wins_with_their_own_ttl(self) -> None:
        policy = HistoryPolicy({"chat.vip": (500, None), "chat.*": 100, "ticker": (5, 2.0)},
                               60.0)
        assert policy.rule("chat.vip") == (500, None)
        assert policy.rule("chat.lobby") == (100, 60.0)
        assert policy.rule("ticker") == (5, 2.0)
        assert policy.rule("news") is None

    @pytest.mark.parametrize("bad", [0, -1, 10_001, True, "10"])
    def test_sizes_are_bounded(self, bad: object) -> None:
        with pytest.raises(ValueError, match="history is a number"):
            HistoryPolicy(bad)  # type: ignore[arg-type]

    def test_ttl_is_positive(self) -> None:
        with pytest.raises(ValueError, match="history_ttl"):
            HistoryPolicy(10, 0)


class TestSince:
    def test_valid(self) -> None:
        assert check_since(None) is None
        assert check_since(("ab12", 0)) == ("ab12", 0)
        assert check_since(["ab12", 7]) == ("ab12", 7)

    @pytest.mark.parametrize("bad", ["ab:1", ("ab",), (1, 2), ("ab", "1"), ("ab", True)])
    def test_wrong_shape(self, bad: object) -> None:
        with pytest.raises(TypeError, match="since"):
            check_since(bad)

    def test_negative_offset(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            check_since(("ab", -1))


def entries(epoch: str, offsets: range) -> list[Publication]:
    return [Publication("t", n, epoch, f"m{n}") for n in offsets]


class TestPlan:
    def test_replays_everything_after_the_offset(self) -> None:
        kept = entries("e", range(3, 11))
        replay, complete = plan_recovery(("e", 5), "e", 10, 3, kept)
        assert complete
        assert [p.offset for p in replay] == [6, 7, 8, 9, 10]

    def test_up_to_date_is_complete_with_nothing_to_replay(self) -> None:
        assert plan_recovery(("e", 10), "e", 10, 3, entries("e", range(3, 11))) == ([], True)
        # All of the history expired, none missed: still complete.
        assert plan_recovery(("e", 10), "e", 10, 11, []) == ([], True)

    def test_the_oldest_kept_is_the_next_missed(self) -> None:
        replay, complete = plan_recovery(("e", 2), "e", 10, 3, entries("e", range(3, 11)))
        assert complete and len(replay) == 8

    def test_trimmed_history_is_incomplete(self) -> None:
        assert plan_recovery(("e", 1), "e", 10, 3, entries("e", range(3, 11))) == ([], False)

    def test_another_epoch_is_incomplete(self) -> None:
        assert plan_recovery(("old", 5), "e", 10, 3, entries("e", range(3, 11))) == ([], False)

    def test_an_offset_from_the_future_is_incomplete(self) -> None:
        assert plan_recovery(("e", 11), "e", 10, 3, entries("e", range(3, 11))) == ([], False)


class TestMemoryHistory:
    def test_offsets_increase_per_topic_from_one(self) -> None:
        history = MemoryHistory()
        first = history.append("a", "x", 10, None)
        assert (first.topic, first.offset, first.data) == ("a", 1, "x")
        assert history.append("a", b"y", 10, None).offset == 2
        assert history.append("b", "z", 10, None).offset == 1
        epoch, top = history.position("a", 10, None)
        assert (epoch, top) == (first.epoch, 2)
        assert history.position("b", 10, None)[0] != epoch

    def test_the_ring_is_bounded_and_recovery_knows_it(self) -> None:
        history = MemoryHistory()
        for n in range(1, 11):
            history.append("a", f"m{n}", 4, None)
        epoch, top, replay, complete = history.recover("a", (history.position("a", 4, None)[0],
                                                             7), 4, None)
        assert (top, complete) == (10, True)
        assert [p.data for p in replay] == ["m8", "m9", "m10"]
        # Offset 6 was the last one seen: 7..10 are kept, so 7 is the oldest missed.
        assert history.recover("a", (epoch, 6), 4, None)[3] is True
        # Offset 5 seen: 6 was trimmed.
        assert history.recover("a", (epoch, 5), 4, None)[2:] == ([], False)

    def test_ttl_empties_the_history_but_keeps_the_position(self) -> None:
        clock = Clock()
        history = MemoryHistory(clock=clock)
        epoch = history.append("a", "old", 10, 5.0).epoch
        clock.now += 6
        assert history.recover("a", (epoch, 0), 10, 5.0) == (epoch, 1, [], False)
        # A subscriber that had seen everything lost nothing.
        assert history.recover("a", (epoch, 1), 10, 5.0) == (epoch, 1, [], True)
        assert history.append("a", "new", 10, 5.0).offset == 2

    def test_the_ttl_counts_from_the_last_publication(self) -> None:
        clock = Clock()
        history = MemoryHistory(clock=clock)
        epoch = history.append("a", "1", 10, 5.0).epoch
        clock.now += 4
        history.append("a", "2", 10, 5.0)
        clock.now += 4
        assert [p.data for p in history.recover("a", (epoch, 0), 10, 5.0)[2]] == ["1", "2"]

    def test_a_forgotten_topic_gets_a_new_epoch(self) -> None:
        history = MemoryHistory(max_topics=2)
        epoch = history.append("a", "1", 10, None).epoch
        history.append("b", "1", 10, None)
        history.append("c", "1", 10, None)  # "a" is the least recently used: forgotten
        new_epoch, top, replay, complete = history.recover("a", (epoch, 1), 10, None)
        assert new_epoch != epoch and (top, replay, complete) == (0, [], False)

    def test_a_smaller_size_keeps_the_newest(self) -> None:
        history = MemoryHistory()
        for n in range(1, 6):
            history.append("a", str(n), 10, None)
        epoch = history.position("a", 2, None)[0]
        _, _, replay, complete = history.recover("a", (epoch, 3), 2, None)
        assert complete and [p.data for p in replay] == ["4", "5"]


def test_the_default_format_leaves_data_unchanged() -> None:
    assert unchanged("t", 1, "e", b"\x00") == b"\x00"
    assert unchanged("t", None, None, "text") == "text"
