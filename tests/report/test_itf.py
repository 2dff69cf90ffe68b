"""ITF traces: every file kvheal writes follows ADR-015's rules and reads back as the views."""

from __future__ import annotations

import copy
import json

import pytest

from kvheal.model import Config, KVHealModel
from kvheal.model.itf import decode_state, dumps, itf_outputs, to_itf, validate
from kvheal.model.render import trace_views

from .conftest import checked, violated, walk
from .conftest import kvheal_here as kvheal


def round_trip(model, trace, meta=None):
    views = trace_views(model, trace)
    obj = json.loads(dumps(to_itf(trace, views, meta)))
    assert validate(obj) == []
    assert [decode_state(s) for s in obj["states"]] == views
    return obj, views


@pytest.mark.parametrize("variants", ["", "tab_crash", "atomic_cache"])
def test_counterexamples(variants):
    for model, name, trace in violated(variants):
        obj, views = round_trip(model, trace, {"property": name})
        assert obj["#meta"]["format"] == "ITF" and obj["#meta"]["property"] == name
        assert obj["vars"] == list(views[0])
        assert len(obj["states"]) == len(trace) + 1
        assert [s["#meta"]["index"] for s in obj["states"]] == list(range(len(trace) + 1))
        assert [s["#meta"]["action"] for s in obj["states"][1:]] == [s["action"] for s in trace]
        loop = next((i for i, s in enumerate(trace) if s.get("loop")), None)
        if loop is None:
            assert "loop" not in obj
        else:
            assert obj["loop"] == loop
            if trace[loop]["action"] != "Stutter":  # the lasso returns to states[loop]
                assert obj["states"][loop] | {"#meta": 0} == obj["states"][-1] | {"#meta": 0}


@pytest.mark.parametrize("variants", ["sweeper", "shared_pending,tab_crash", "atomic_cache,sweeper"])
def test_every_kind_of_value(variants):
    """Random walks reach the sweeper's phases, shared lists and (t, m) heal keys."""
    model = KVHealModel(Config.make(tabs=2, variants=variants))
    tags: set[str] = set()

    def collect(v):
        if isinstance(v, dict):
            if "tag" in v:
                tags.add(v["tag"])
            for x in v.values():
                collect(x)
        elif isinstance(v, list):
            for x in v:
                collect(x)

    for seed in range(8):
        obj, _ = round_trip(model, walk(model, 40, seed))
        collect(obj["states"])
    if variants == "sweeper":
        assert {"Listed", "Read"} <= tags
    if "shared_pending" in variants:
        assert "Write" in tags


def test_encoding_of_sets_sequences_and_maps():
    model, result = checked("")
    trace = result.properties["NoDuplicates"].trace
    obj, views = round_trip(model, trace)
    last = obj["states"][-1]
    assert last["cache"] == [{"#bigint": "0"}, {"#bigint": "0"}]  # a sequence: the duplicate stays
    assert last["stored"] == {"#set": [{"#bigint": str(m)} for m in views[-1]["stored"]]}
    assert last["post"]["#map"][0][0] == {"#bigint": "0"}
    assert last["alive"] == {"#map": [[{"#bigint": "0"}, True], [{"#bigint": "1"}, True]]}
    assert {"tag": "Idle", "value": {}} in [v for _, v in last["poll"]["#map"]]


def broken(obj, how):
    obj = copy.deepcopy(obj)
    how(obj)
    return validate(obj)


def test_validator_finds_each_kind_of_error():
    model, result = checked("")
    obj = to_itf(
        result.properties["Converges"].trace, trace_views(model, result.properties["Converges"].trace)
    )
    assert validate(obj) == []
    st = lambda o: o["states"][3]  # noqa: E731
    cases = {
        "missing vars": lambda o: o.pop("vars"),
        "a variable missing": lambda o: st(o).pop("cache"),
        "an extra variable": lambda o: st(o).update(extra=True),
        "loop out of range": lambda o: o.update(loop=len(o["states"])),
        "wrong index": lambda o: st(o)["#meta"].update(index=7),
        "bad bigint": lambda o: st(o).update(cache=[{"#bigint": "1.5"}]),
        "float": lambda o: st(o).update(cache=[1.5]),
        "null": lambda o: st(o).update(cache=None),
        "huge plain int": lambda o: st(o).update(cache=[2**60]),
        "repeated set element": lambda o: st(o).update(stored={"#set": [{"#bigint": "1"}, {"#bigint": "1"}]}),
        "repeated map key": lambda o: st(o).update(
            alive={"#map": [[{"#bigint": "0"}, True], [{"#bigint": "0"}, False]]}
        ),
        "map not pairs": lambda o: st(o).update(alive={"#map": [[{"#bigint": "0"}]]}),
        "special with company": lambda o: st(o).update(cache={"#set": [], "x": 1}),
        "unknown special": lambda o: st(o).update(cache={"#bag": []}),
        "unknown top field": lambda o: o.update(trace=[]),
    }
    for name, how in cases.items():
        assert broken(obj, how), name


def test_check_itf_option(tmp_path):
    one = tmp_path / "cex.itf.json"
    proc = kvheal("check", "--tabs", "2", "--property", "Converges", "-q", "--itf", str(one))
    assert proc.returncode == 1, proc.stderr
    obj = json.loads(one.read_text())
    assert validate(obj) == [] and obj["#meta"]["property"] == "Converges" and "loop" in obj
    many = tmp_path / "all.itf.json"
    proc = kvheal("check", "--tabs", "2", "-q", "--json", "--itf", str(many))
    assert proc.returncode == 1
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("all."))
    assert names == ["all.Converges.itf.json", "all.NoDuplicates.itf.json", "all.PendingDrains.itf.json"]
    for p in tmp_path.glob("all.*"):
        assert validate(json.loads(p.read_text())) == []
    proc = kvheal("check", "--tabs", "2", "-q", "--itf", str(tmp_path / "no" / "such" / "dir.json"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_nothing_violated_writes_nothing():
    model, result = checked("dedupe,atomic_cache")
    assert itf_outputs("x.itf.json", model, result) == {}
