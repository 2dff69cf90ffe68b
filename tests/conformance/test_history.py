"""The history checker of `kvheal audit` on small hand-built histories: one per edge case, exact verdicts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from kvheal.conformance.history import (
    HOLDS,
    UNKNOWN,
    VIOLATED,
    Op,
    check_history,
    op_from_dict,
    sequence_svg,
    step_table,
)


class H:
    """A history under construction: `h.post("a", 0, 1)`, `h.read(["a"], 2, 3)`, `h.heal("a", 4, 5)`."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def _add(self, **kw) -> Op:
        op = Op(index=len(self.ops), **kw)
        self.ops.append(op)
        return op

    def post(self, m, t0, t1, *, ok=True, client="tab0", may_skip=False):
        ok = None if t1 is None else ok  # no answer: outcome unknown
        return self._add(
            client=client, kind="post", invoke=t0, complete=t1, id=m, ok=ok, may_skip_write=may_skip
        )

    def heal(self, m, t0, t1, *, ok=True, client="tab0", may_skip=False):
        return self._add(
            client=client, kind="heal", invoke=t0, complete=t1, id=m, ok=ok, may_skip_write=may_skip
        )

    def read(self, ids, t0, t1, *, client="tab0", partial=False, ok=True):
        return self._add(
            client=client, kind="read", invoke=t0, complete=t1, ids=tuple(ids), ok=ok, partial=partial
        )

    def check(self, **kw):
        result = check_history(self.ops, **kw)
        return result, {name: r.status for name, r in result.properties.items()}


def test_empty_history_is_unknown_but_for_heals():
    result, v = H().check()
    assert v == {"Durability": UNKNOWN, "Duplicates": UNKNOWN, "HealEffective": HOLDS, "Consistency": UNKNOWN}
    assert result.exit_code == 3 and result.status == UNKNOWN


def test_sequential_post_then_read_holds():
    h = H()
    h.post("a", 0, 1)
    h.read(["a"], 2, 3)
    result, v = h.check()
    assert v == {"Durability": HOLDS, "Duplicates": HOLDS, "HealEffective": HOLDS, "Consistency": HOLDS}
    assert result.exit_code == 0 and result.stats["missing_after_ack"] == 0


def test_lost_update_of_racing_posts_is_consistent_but_not_durable():
    h = H()
    h.post("a", 0, 1)
    h.post("b", 0, 1, client="tab1")
    h.read(["b"], 2, 3)
    result, v = h.check()
    assert v["Consistency"] == HOLDS  # both read the empty cache; b's write came last
    assert v["Durability"] == VIOLATED and result.stats["missing_after_ack"] == 1
    anomaly = result.properties["Durability"].anomaly
    assert [op.index for op in anomaly.ops] == [0, 1, 2]  # the post, the racing post, the final read
    assert "a was acknowledged" in anomaly.summary


def test_lost_then_healed_is_durable():
    h = H()
    h.post("a", 0, 1)
    h.post("b", 0, 1, client="tab1")
    h.read(["b"], 2, 3)
    h.heal("a", 4, 5)
    h.read(["a", "b"], 6, 7)
    _, v = h.check()
    assert v == {"Durability": HOLDS, "Duplicates": HOLDS, "HealEffective": HOLDS, "Consistency": HOLDS}


def test_acknowledged_but_never_written_is_inconsistent():
    h = H()
    h.post("a", 0, 1)
    h.read([], 2, 3)
    result, v = h.check()
    assert v["Consistency"] == VIOLATED and v["Durability"] == VIOLATED
    anomaly = result.properties["Consistency"].anomaly
    assert [op.index for op in anomaly.ops] == [0, 1]
    assert "differing: a" in anomaly.summary


def test_a_write_seen_then_rolled_back_without_a_concurrent_writer_is_inconsistent():
    h = H()
    h.post("a", 0, 1)
    h.read(["a"], 2, 3)
    h.post("b", 4, 5)
    h.read(["b"], 6, 7)  # b's snapshot was taken after the read that saw a: it must keep a
    _, v = h.check()
    assert v["Consistency"] == VIOLATED


def test_the_same_rollback_with_an_overlapping_writer_is_consistent():
    h = H()
    h.post("a", 0, 1)
    h.post("b", 0.5, 5)  # captured the empty cache before a's write, wrote after the read
    h.read(["a"], 2, 3)
    h.read(["b"], 6, 7)
    _, v = h.check()
    assert v["Consistency"] == HOLDS


def test_phantom_id_is_inconsistent():
    h = H()
    h.post("a", 0, 1)
    h.read(["a", "zz"], 2, 3)
    result, v = h.check()
    assert v["Consistency"] == VIOLATED
    anomaly = result.properties["Consistency"].anomaly
    assert [op.index for op in anomaly.ops] == [1] and "zz" in anomaly.summary


def test_id_read_before_its_post_was_invoked_is_inconsistent():
    h = H()
    h.read(["a"], 0, 1)
    h.post("a", 2, 3)
    h.read(["a"], 4, 5)
    result, v = h.check()
    assert v["Consistency"] == VIOLATED
    assert "invoked only after the read completed" in result.properties["Consistency"].reason


def test_refused_post_never_writes():
    h = H()
    h.post("a", 0, 1, ok=False)  # e.g. 429 or 409: nothing written
    h.read(["a"], 2, 3)
    _, v = h.check()
    assert v["Consistency"] == VIOLATED
    assert v["Durability"] == UNKNOWN  # nothing was acknowledged


def test_unanswered_post_may_take_effect_any_time_later_or_never():
    h = H()
    h.post("a", 0, None)  # timed out
    h.read([], 1, 2)
    h.read(["a"], 3, 4)
    _, v = h.check()
    assert v["Consistency"] == HOLDS and v["Durability"] == UNKNOWN
    h2 = H()
    h2.post("a", 0, None)
    h2.post("b", 0, 1)
    h2.read(["b"], 3, 4)
    assert h2.check()[1] == {
        "Durability": HOLDS,
        "Duplicates": HOLDS,
        "HealEffective": HOLDS,
        "Consistency": HOLDS,
    }


def test_post_acknowledged_with_cached_false_may_not_have_written():
    h = H()
    h.post("a", 0, 1, may_skip=True)
    h.read([], 2, 3)
    _, v = h.check()
    assert v["Consistency"] == HOLDS and v["Durability"] == VIOLATED


def test_ineffective_heal():
    h = H()
    h.post("a", 0, 1)
    h.post("b", 0, 1)
    h.read(["b"], 2, 3)
    h.heal("a", 4, 5)
    h.read(["b"], 6, 7)
    result, v = h.check()
    assert v["HealEffective"] == VIOLATED and v["Consistency"] == VIOLATED and v["Durability"] == VIOLATED
    anomaly = result.properties["HealEffective"].anomaly
    assert [op.index for op in anomaly.ops] == [0, 3, 4]
    # a background writer the history does not show could have dropped it: unknown, not violated
    _, v = h.check(reconciler=True)
    assert v["HealEffective"] == UNKNOWN and v["Consistency"] == HOLDS


def test_heal_overlapped_by_a_stale_write_is_explained():
    h = H()
    h.post("a", 0, 1)
    h.post("b", 0, 1)
    h.read(["b"], 2, 3)
    h.heal("a", 4, 5)
    h.post("c", 4.1, 6)  # captured [b] before the heal wrote, wrote [b, c] after
    h.read(["b", "c"], 7, 8)
    _, v = h.check()
    assert v["HealEffective"] == HOLDS and v["Consistency"] == HOLDS and v["Durability"] == VIOLATED


def test_read_that_starts_before_the_heal_completes_proves_nothing():
    h = H()
    h.post("a", 0, 1)
    h.post("b", 0, 1)
    h.heal("a", 2, 5)
    h.read(["b"], 3, 6)
    h.read(["a", "b"], 7, 8)
    _, v = h.check()
    assert v == {"Durability": HOLDS, "Duplicates": HOLDS, "HealEffective": HOLDS, "Consistency": HOLDS}


def test_duplicates_from_a_heal_of_a_present_id_are_consistent():
    h = H()
    h.post("a", 0, 1)
    h.read(["a"], 2, 3)
    h.heal("a", 4, 5)  # the seed design writes a second copy
    h.read(["a", "a"], 6, 7)
    result, v = h.check()
    assert v["Duplicates"] == VIOLATED and v["Consistency"] == HOLDS
    anomaly = result.properties["Duplicates"].anomaly
    assert [op.index for op in anomaly.ops] == [0, 2, 3]


def test_dedupe_heal_of_present_id_writes_nothing():
    h = H()
    h.post("a", 0, 1)
    h.heal("a", 2, 3)  # answered success; with dedupe it saw a and wrote nothing
    h.read(["a"], 4, 5)
    assert h.check()[1]["Consistency"] == HOLDS


def test_partial_reads_prove_presence_only():
    h = H()
    h.post("a", 0, 1)
    h.post("b", 2, 3)
    h.read(["b"], 4, 5, partial=True)  # hasMore: a is there but not shown
    result, v = h.check()
    assert v["Consistency"] == HOLDS
    assert v["Durability"] == UNKNOWN  # no complete final read
    assert result.stats["missing_after_ack"] == 0


def test_failed_reads_are_ignored():
    h = H()
    h.post("a", 0, 1)
    h.read([], 2, 3, ok=False)
    h.read(["a"], 4, 5)
    assert h.check()[1] == {
        "Durability": HOLDS,
        "Duplicates": HOLDS,
        "HealEffective": HOLDS,
        "Consistency": HOLDS,
    }


def test_search_budget_gives_unknown():
    h = H()
    for n in range(6):
        h.post(f"m{n}", 0, 1, client=f"tab{n}")
    h.read(["m5"], 2, 3)
    result, v = h.check(max_steps=1)
    assert v["Consistency"] == UNKNOWN and "budget" in result.properties["Consistency"].reason
    assert result.exit_code == 1  # Durability is violated: violated outranks unknown
    assert h.check()[1]["Consistency"] == HOLDS


def test_a_burst_of_racing_posts_is_searched_fast():
    h = H()
    n = 24
    for k in range(n):
        h.post(f"m{k:02}", 0, 1 + k * 0.01, client=f"tab{k}")
    survivors = ["m03", "m11", "m17", "m23"]
    h.read(survivors, 2, 3)
    result, v = h.check(max_steps=5000)
    assert v["Consistency"] == HOLDS, result.properties["Consistency"].reason


def test_segments_without_reads_carry_their_value_forward():
    h = H()
    h.post("a", 0, 1)
    h.post("b", 2, 3)
    h.heal("a", 4, 5)
    h.read(["a", "a", "b"], 6, 7)
    assert h.check()[1]["Consistency"] == HOLDS
    h.read(["a", "b"], 8, 9)  # the duplicate cannot vanish without a write
    assert h.check()[1]["Consistency"] == VIOLATED


def test_renderings():
    h = H()
    h.post("a", 0, 1)
    h.post("b", 0, 1, client="tab1")
    h.read(["b"], 2, 3, client="audit")
    anomaly = h.check()[0].properties["Durability"].anomaly
    table = step_table(anomaly, origin=0.0)
    lines = table.strip().splitlines()
    assert lines[2].startswith("| step | # | client |") and len(lines) == 4 + 3
    assert "| 1 | 0 | tab0 | post a -> ok | 0.0 | 1000.0 | acknowledged |" in table
    svg = sequence_svg(anomaly)
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert {"tab0", "tab1", "audit", "cache"} <= set(texts)
    arrows = [line for line in root.iter("{http://www.w3.org/2000/svg}line") if line.get("marker-end")]
    assert len(arrows) == 6  # a request and an answer per operation


def test_long_reads_are_summarised_by_the_focus_id():
    read = Op(0, "tab0", "read", 0, 1, ids=tuple("abcdefgh") + ("a",))
    assert read.label() == "read -> [a, b, c, d, e, f, g, h, a]"
    assert read.label("a") == "read -> 9 ids, a x2"
    assert read.label("b") == "read -> 9 ids, with b"
    assert read.label("z") == "read -> 9 ids, without z"
    assert Op(1, "tab0", "read", 0, 1, ids=("a",), partial=True).label("a") == "read -> [a] (partial)"
    assert (
        Op(2, "tab0", "heal", 0, None, id="a", ok=None, note="ReadTimeout").label()
        == "heal a -> unknown (ReadTimeout)"
    )


def test_op_round_trip_through_a_dict():
    op = Op(
        index=3, client="tab1", kind="read", invoke=0.5, complete=None, ids=("a", "b"), ok=True, partial=True
    )
    assert op_from_dict({k: getattr(op, k) for k in Op.__slots__} | {"ids": ["a", "b"], "extra": 1}) == op


@pytest.mark.parametrize(
    "ok, skip, expected",
    [(True, False, "must"), (True, True, "maybe"), (None, False, "maybe"), (False, False, "no")],
)
def test_write_modes(ok, skip, expected):
    assert Op(0, "t", "post", 0, 1, id="a", ok=ok, may_skip_write=skip).writes == expected
