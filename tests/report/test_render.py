"""The sequence diagram and the step table of a counterexample."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from kvheal.model import Config, KVHealModel
from kvheal.model.render import PALETTE, sequence_svg, state_label, step_rows, step_table_md, trace_views

from .conftest import checked, violated, walk

SVG = "{http://www.w3.org/2000/svg}"


def texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


@pytest.mark.parametrize("variants", ["", "tab_crash", "atomic_cache"])
def test_every_counterexample_draws(variants):
    for model, name, trace in violated(variants):
        views = trace_views(model, trace)
        svg = sequence_svg(trace, views, title=f"{variants}: {name}", violated=name)
        words = texts(svg)
        for lane in ("tab 0", "tab 1", "POST m0", "POST m1", "comment:0", "comment:1", "recent:comments"):
            assert lane in words, (name, lane)
        assert ("sweeper" in words) == ("sweeper" in variants)
        # one row per step, numbered, with its action
        for i, step in enumerate(trace):
            assert f"{i + 1:>2}" in words
            assert any(w.startswith(step["action"] + "(") for w in words)
        lasso = any(s.get("loop") for s in trace)
        assert ("↻ repeats for ever" in words) == lasso
        assert (
            f"✗ {name}: "
            + ("the goal is false on every pass of the loop" if lasso else "violated in the last state")
            in words
        )
        assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing external


@pytest.mark.parametrize("variants", ["sweeper", "shared_pending,tab_crash"])
def test_any_trace_draws(variants):
    """Designs whose counterexamples are costly to find: long random walks draw too."""
    model = KVHealModel(Config.make(tabs=2, variants=variants))
    for seed in range(5):
        trace = walk(model, 40, seed)
        words = texts(sequence_svg(trace, trace_views(model, trace)))
        assert ("sweeper" in words) == ("sweeper" in variants)
        assert ("pendingMessages" in words) == ("shared_pending" in variants)
        assert "heal m0" in words
        assert not any(w.startswith("? ") for w in words)
        root = ET.fromstring(sequence_svg(trace, trace_views(model, trace)))
        assert not [e for e in root.iter(f"{SVG}text") if e.get("class") == "undrawn"], "an action not drawn"


def test_messages_have_their_colours_and_snapshots_show():
    model, _, trace = next(v for v in violated("") if v[1] == "Converges")
    svg = sequence_svg(trace, trace_views(model, trace))
    root = ET.fromstring(svg)
    lines = {(l.get("stroke")) for l in root.iter(f"{SVG}line")}
    assert PALETTE[0] in lines and PALETTE[1] in lines  # m0's and m1's arrows
    words = texts(svg)
    # PostRead shows the snapshot the post read: both read the empty cache in this race
    assert words.count("get → []") == 2
    # the stale write: m1's PostWrite puts [1] over [0]
    assert "put [1]" in words and "put [0]" in words
    # the crash of a tab is marked
    model, _, trace = next(v for v in violated("tab_crash") if any(s["action"] == "Crash" for s in v[2]))
    assert "crashes" in texts(sequence_svg(trace, trace_views(model, trace)))


def test_ids_are_prefixed_so_diagrams_share_a_page():
    model, _, trace = violated("")[0]
    views = trace_views(model, trace)
    a, b = sequence_svg(trace, views, ident="one"), sequence_svg(trace, views, ident="two")
    ids = lambda s: {e.get("id") for e in ET.fromstring(s).iter() if e.get("id")}  # noqa: E731
    assert ids(a) and not ids(a) & ids(b)


def test_step_table():
    model, _, trace = next(v for v in violated("") if v[1] == "Converges")
    views = trace_views(model, trace)
    rows = step_rows(trace, views)
    assert [r[0] for r in rows] == list(range(1, len(trace) + 1))
    assert rows[0][1:] == ("PostKey(m=0)", "stored: [] → [0]; post[0]: Unsent → KeyWritten")
    loop = next(i for i, s in enumerate(trace) if s.get("loop"))
    assert [r[1].startswith("↻ ") for r in rows] == [i == loop for i in range(len(trace))]
    md = step_table_md(trace, views)
    assert md.splitlines()[0] == "| step | action | what changed |"
    assert len([l for l in md.splitlines() if l.startswith("| ") and l[2].isdigit()]) == len(trace)
    assert f"Steps {loop + 1}-{len(trace)} (↻) repeat for ever" in md


def test_views_must_match_the_trace():
    model, _, trace = violated("")[0]
    views = trace_views(model, trace)
    with pytest.raises(ValueError):
        sequence_svg(trace, views[:-1])
    with pytest.raises(ValueError):
        step_table_md(trace, views[1:])


def test_state_label_omits_resting_values():
    model, _ = checked("")
    label = state_label(model.view(model.init_states()[0]))
    assert label.splitlines()[0] == "cache []  stored []"
    assert "heal" not in label and "alive" not in label and "sweep" not in label


def test_full_state_table():
    from kvheal.model.render import state_table_md

    model, _, trace = next(v for v in violated("") if v[1] == "Converges")
    views = trace_views(model, trace)
    lines = state_table_md(trace, views).splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head[:4] == ["state", "after", "stored", "cache"] and "pending[1]" in head
    assert len(lines) == 2 + len(views)
    row = [c.strip() for c in lines[2 + 8].strip("|").split("|")]  # after PostWrite(m=1): the stale write
    assert row[1] == "8. PostWrite" and row[head.index("cache")] == "[1]"
