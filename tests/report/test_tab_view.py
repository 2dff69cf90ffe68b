"""What each tab has shown (SPEC §6's tab view) in the sequence diagrams and step tables.

The counterexamples are ``kvheal check --tabs 2 --variant as_built --json``'s, pinned in
``as_built_tabs2.json`` (the check takes half a minute and 3.5 million states; replaying a
trace takes a millisecond). Each must still be a counterexample in today's model."""

from __future__ import annotations

import functools
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kvheal.model import Config, KVHealModel
from kvheal.model.render import DRAWN, never_shown, sequence_svg, step_table_md, trace_views
from kvheal.model.trace import check_counterexample, replay_trace

from .conftest import walk

SVG = "{http://www.w3.org/2000/svg}"
PINNED = json.loads((Path(__file__).resolve().parent / "as_built_tabs2.json").read_text())


@functools.cache
def as_built() -> KVHealModel:
    """The design the traces were found in (the preset as it was then: new flags may join it)."""
    return KVHealModel(Config.make(tabs=2, variants=",".join(PINNED["config"]["variant"])))


def pinned(prop: str):
    trace = PINNED["properties"][prop]["trace"]
    return trace, trace_views(as_built(), trace)


def cells(svg: str) -> dict[tuple[int, int], str]:
    """``(step, tab) -> text`` of the diagram's shown cells; tab -1 is the clock."""
    out = {}
    for e in ET.fromstring(svg).iter(f"{SVG}text"):
        cls = e.get("class")
        if cls == "shown":
            out[(int(e.get("data-step")), int(e.get("data-tab")))] = "".join(e.itertext())
        elif cls == "clock":
            out[(int(e.get("data-step")), -1)] = "".join(e.itertext())
    return out


def test_the_pinned_traces_are_still_counterexamples():
    assert PINNED["config"]["variant"] == ["found_in_response", "put_fails", "reload", "tab_view"]
    lengths = {n: len(p["trace"]) for n, p in PINNED["properties"].items() if p["status"] == "violated"}
    assert lengths == {"NoDuplicates": 9, "Converges": 17, "PendingDrains": 20, "EveryoneSees": 17}
    for name in ("NoDuplicates", "Converges", "EveryoneSees"):
        check_counterexample(as_built(), name, PINNED["properties"][name]["trace"])
    # PendingDrains' loop heals m0 again and again; since the model counts the heals sent (a
    # ghost, for HealsTerminate) the loop closes only once the count stops: the steps still replay
    assert len(replay_trace(as_built(), PINNED["properties"]["PendingDrains"]["trace"])) == 21


def test_everyone_sees_diagram_shows_what_each_tab_has_shown():
    trace, views = pinned("EveryoneSees")
    svg = sequence_svg(trace, views, title="as_built: EveryoneSees", violated="EveryoneSees")
    got = cells(svg)
    assert len(got) == 17 * 3  # every step: the clock and both tabs
    # the page shows a message as soon as it is posted
    assert got[(1, 0)] == "{0} ≥0" and got[(1, 1)] == "{} ≥0"
    assert got[(5, 1)] == "{1} ≥0"
    # Tick: the clock moves at step 11 and not before
    assert [got[(i, -1)] for i in range(1, 18)] == ["0"] * 10 + ["1"] * 7
    # tab 0's poll read [0] before m1 landed; its answer moves the cursor past m1's stamp
    assert got[(12, 0)] == "{0} ≥1"
    # tab 1's poll read [0,1]: its page shows m0 too
    assert got[(13, 1)] == "{0,1} ≥1"
    # and in the loop tab 0 never shows m1, though the cache holds it throughout
    assert {got[(i, 0)] for i in range(14, 18)} == {"{0} ≥1"}
    assert never_shown(trace, views) == {0: [1]}
    words = ["".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert "tab 0 never shows m1 (in the cache throughout)" in words
    assert "time passes: clock 0 → 1" in words
    assert "response [0]; cursor → 1; found {0}" in words  # step 12, tab 0
    assert "response [0,1]; shows +{0}; cursor → 1; found {1}" in words  # step 13, tab 1
    assert words.count("response []; found {}") == 2  # the loop's polls return nothing new
    assert undrawn(svg) == []
    # a tab is due only its channel's messages (ai_channel): with m1 outside tab 0's channel
    # the note names nothing for it
    assert never_shown(trace, views, [[0], [0, 1]]) == {}
    other = sequence_svg(trace, views, violated="EveryoneSees", channels=[[0], [0, 1]])
    assert not any("never shows" in "".join(t.itertext()) for t in ET.fromstring(other).iter(f"{SVG}text"))


def undrawn(svg: str) -> list[str]:
    """The actions a diagram only names (the renderer does not draw them)."""
    return [
        "".join(e.itertext()) for e in ET.fromstring(svg).iter(f"{SVG}text") if e.get("class") == "undrawn"
    ]


def test_an_action_the_renderer_does_not_know_is_named_on_its_lane():
    trace, views = pinned("NoDuplicates")
    odd = [dict(s) for s in trace]
    odd[2] = {"action": "PollRepeat", "args": {"t": 0}}  # as if a newer flag's action
    assert undrawn(sequence_svg(odd, views)) == ["PollRepeat(t=0)"]


def test_changed_cells_are_tinted():
    trace, views = pinned("EveryoneSees")
    root = ET.fromstring(sequence_svg(trace, views))
    fills = [r.get("fill") for r in root.iter(f"{SVG}rect")]
    # shown grew at steps 1, 5 and 13; the clock moved at 11; tab 0's cursor alone at 12
    assert fills.count("#dff3e0") == 3
    assert fills.count("#fff0b3") == 2


def test_step_table_has_the_view_columns():
    trace, views = pinned("EveryoneSees")
    lines = step_table_md(trace, views).splitlines()
    assert lines[0] == (
        "| step | action | what changed | clock | tab 0 shows (cursor) | tab 1 shows (cursor) |"
    )
    rows = {int(r.split("|")[1]): [c.strip() for c in r.strip("|").split("|")] for r in lines[2:19]}
    assert rows[11][1:2] + rows[11][3:] == ["`Tick()`", "1", "{0} ≥0", "{1} ≥0"]
    assert rows[12][3:] == ["1", "{0} ≥1", "{1} ≥0"]
    assert rows[13][3:] == ["1", "{0} ≥1", "{0,1} ≥1"]
    assert rows[17][3:] == ["1", "{0} ≥1", "{0,1} ≥1"]


def test_a_design_without_the_tab_view_has_no_view_columns():
    model = KVHealModel(Config.make(tabs=2))
    trace = walk(model, 12)
    views = trace_views(model, trace)
    assert cells(sequence_svg(trace, views)) == {}
    assert step_table_md(trace, views).splitlines()[0] == "| step | action | what changed |"


def test_heals_of_a_design_without_dedupe_are_drawn_as_puts():
    """as_built has no dedupe: the loop's heal writes [0,1] over [0,1] (a put, not a skip)."""
    trace, views = pinned("PendingDrains")
    words = [
        "".join(t.itertext())
        for t in ET.fromstring(sequence_svg(trace, views, dedupe=False)).iter(f"{SVG}text")
    ]
    assert "put [0,1]" in words and "m0 already cached: no write" not in words
    assert cells(sequence_svg(trace, views))[(20, 0)] == "{0,1} ≥1"


@pytest.mark.parametrize(
    "variants",
    [
        "as_built",
        "as_built_fixed",
        "as_built,stale_reads",
        "as_built,clock_skew",
        "as_built_fixed,shared_pending",
    ],
)
def test_every_as_built_action_draws(variants):
    """Random walks through the as-built flags (reloads, failed puts, stale reads): every
    action the renderer knows is drawn (only a newer flag's action is written by name) and
    every step has its view cells."""
    model = KVHealModel(Config.make(tabs=2, variants=variants))
    seen = set()
    for seed in range(8):
        trace = walk(model, 40, seed)
        seen |= {s["action"] for s in trace}
        svg = sequence_svg(trace, trace_views(model, trace))
        assert len(undrawn(svg)) == sum(s["action"] not in DRAWN for s in trace), (variants, seed)
        assert len(cells(svg)) == len(trace) * 3
    assert {"Tick", "PollDone", "Reload"} <= seen
    if "stale_reads" in variants:
        assert {"PostReadStale", "HealReadStale", "PollReadStale"} <= seen
