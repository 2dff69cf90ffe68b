"""The report on the app as deployed: the claims' verdicts for as_built and as_built_fixed,
the as-built section, and README's table unchanged by it.

as_built's record comes from a pinned check (``as_built_post_fails_tabs2.json``: 11.4 million
states, most of a minute to recompute; its traces are checked to be counterexamples here);
the other as-built designs are checked here (a few hundred thousand states at most)."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from kvheal.flags import MODELLED_ONLY, PRESETS
from kvheal.model import Config, KVHealModel
from kvheal.model.claims import DEPLOYED, FIXED, REFRESH, REFRESH_CONTROL
from kvheal.model.report import (
    AS_BUILT_DESIGNS,
    REPORT_PROPERTIES,
    assemble,
    design_name,
    designs_for,
    readme_table,
    record_of,
)
from kvheal.model.trace import check_counterexample

from .conftest import checked

HERE = Path(__file__).resolve().parent
#: as_built as it is since issue 10 added post_fails (and HealOnlyMissing, HealsTerminate)
PINNED = json.loads((HERE / "as_built_post_fails_tabs2.json").read_text())
META = {"version": "0.1.0", "command": "kvheal report", "tabs": 2, "mode": "quick", "skipped": []}


def pinned_record() -> dict:
    flags = ",".join(PINNED["config"]["variant"])
    kinds = {p.name: p.kind for p in KVHealModel(Config.make(tabs=2, variants=flags)).properties()}
    return {
        "design": "as_built",
        "tabs": 2,
        "per_tab": 1,
        "cap": 2,
        "states": PINNED["states"],
        "transitions": PINNED["transitions"],
        "seconds": 30.0,
        "complete": True,
        "method": "explicit",
        "properties": {
            n: {"kind": kinds[n], "status": p["status"], "trace": p["trace"]}
            for n, p in PINNED["properties"].items()
        },
    }


@functools.cache
def records() -> tuple:
    out = [record_of(*checked(""))]
    out.append(pinned_record())
    for design in (FIXED, REFRESH, REFRESH_CONTROL):
        out.append(record_of(*checked(design)))
    for r in out:
        r["seconds"] = 0.5
    return tuple(out)


@functools.cache
def report() -> dict:
    return assemble(list(records()), META)


def claim_row(md: str, start: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith("| " + start))
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def test_the_pinned_record_is_still_made_of_counterexamples():
    model = KVHealModel(Config.make(tabs=2, variants=",".join(PINNED["config"]["variant"])))
    assert set(PINNED["config"]["variant"]) == PRESETS["as_built"]
    for name, p in PINNED["properties"].items():
        if p["status"] == "violated":
            check_counterexample(model, name, p["trace"])


def test_the_as_built_designs_are_named_and_in_every_mode():
    assert list(AS_BUILT_DESIGNS) == ["as_built", "as_built_fixed", REFRESH, REFRESH_CONTROL]
    for mode in ("quick", "full"):
        assert designs_for(mode)[-4:] == list(AS_BUILT_DESIGNS)
    assert design_name(",".join(sorted(PRESETS["as_built"]))) == "as_built"
    assert design_name(",".join(sorted(PRESETS["as_built_fixed"]))) == "as_built_fixed"
    assert [r["design"] for r in records()] == ["seed", DEPLOYED, FIXED, REFRESH, REFRESH_CONTROL]


def test_verdicts_of_the_as_built_designs():
    by = {r["design"]: r for r in records()}
    status = {d: {n: p["status"] for n, p in r["properties"].items()} for d, r in by.items()}
    assert set(status[FIXED].values()) == {"holds"} and "EveryoneSees" in status[FIXED]
    assert set(status[REFRESH_CONTROL].values()) == {"holds"}
    assert {n for n, s in status[REFRESH].items() if s == "violated"} == {"Converges", "EveryoneSees"}
    # the refresh is what breaks it: a Reload in the Converges lasso
    assert any(s["action"] == "Reload" for s in by[REFRESH]["properties"]["Converges"]["trace"])


def test_claims_for_the_app_as_deployed_and_its_fix():
    md = report()["report.md"]
    head = claim_row(md, "claim |")
    assert head[1:5] == [
        "post-mortem design",
        "as deployed (as_built)",
        "the fix (as_built_fixed)",
        "true of",
    ]
    row = claim_row(md, '"Success rate: 100%"')
    assert row[2] == "refuted: [Converges violated](cex/as_built-Converges.md)"
    assert row[3] == "confirmed: Converges holds (exhaustive at this size)"
    assert row[4] == FIXED  # the refresh probe and its control are not candidates
    row = claim_row(md, '"Fixes for everyone')
    assert row[2] == (
        "refuted: [Converges violated](cex/as_built-Converges.md), "
        "[EveryoneSees violated](cex/as_built-EveryoneSees.md)"
    )
    assert row[3] == "confirmed: Converges holds, EveryoneSees holds (exhaustive at this size)"
    row = claim_row(md, '"Survives refresh')
    stem = REFRESH.replace(",", "+")
    assert row[1].startswith("not modelled: reloads")
    assert row[2] == (
        f"refuted: [Converges violated](cex/{stem}-Converges.md), "
        f"[EveryoneSees violated](cex/{stem}-EveryoneSees.md) (on {REFRESH}); "
        "the same without reload (control): confirmed: Converges holds, PendingDrains holds, "
        "EveryoneSees holds (exhaustive at this size)"
    )
    assert (
        row[3]
        == "confirmed: Converges holds, PendingDrains holds, EveryoneSees holds (exhaustive at this size)"
    )
    assert row[4] == FIXED
    row = claim_row(md, '"heals within one poll cycle')
    assert row[2] == (
        "refuted: [Converges violated](cex/as_built-Converges.md), "
        "[HealsTerminate violated](cex/as_built-HealsTerminate.md)"
    )
    assert row[3].startswith("in part: Converges holds, HealsTerminate holds; every message is healed")
    assert row[4] == f"in part (what the model checks holds): {FIXED}"
    row = claim_row(md, '"No backoff needed')
    assert row[1].startswith("not modelled: ")
    assert row[2] == "refuted: [HealsTerminate violated](cex/as_built-HealsTerminate.md)"
    assert row[3].startswith(
        "in part: HealsTerminate holds; heals stop after at most two per tab and message"
    )
    row = claim_row(md, '"No lost messages"')
    assert row[2] == (
        "refuted: [Converges violated](cex/as_built-Converges.md), "
        "[PendingDrains violated](cex/as_built-PendingDrains.md)"
    )


def test_the_as_built_section():
    files = report()
    md = files["report.md"]
    section = md.split("## The app as deployed (tabs 2)")[1].split("\n## ")[0]
    head = claim_row(section, "design | role |")
    rows = {r[0]: dict(zip(head, r)) for r in (claim_row(section, d + " |") for d in AS_BUILT_DESIGNS)}
    # every property a record decides has a column (a newer one of SPEC §7 too)
    tail = ["states", "transitions", "time", "method", "z3", "real system"]
    assert head[2:8] == list(REPORT_PROPERTIES) and head[-6:] == tail
    assert set(head[2:-6]) == {p for r in records() for p in r["properties"]}
    assert {k: rows["as_built"][k] for k in (*REPORT_PROPERTIES, "states", "transitions")} == {
        "AckedIsStored": "holds",
        "CacheFromStore": "holds",
        "NoDuplicates": "[violated (9)](cex/as_built-NoDuplicates.md)",
        "Converges": "[violated (15)](cex/as_built-Converges.md)",
        "PendingDrains": "[violated (27)](cex/as_built-PendingDrains.md)",
        "EveryoneSees": "[violated (14)](cex/as_built-EveryoneSees.md)",
        "states": "11,474,320",
        "transitions": "47,047,956",
    }
    assert rows["as_built_fixed"]["role"] == "the fix (preset as_built_fixed)"
    assert {rows["as_built_fixed"][p] for p in head[2:-6]} == {"holds"}
    # z3's column: these records ran no z3 and no replay (the real system has every flag of
    # the four designs: their counterexamples are replayable)
    assert [rows[d]["z3"] for d in AS_BUILT_DESIGNS] == ["—"] * 4
    assert [rows[d]["real system"] for d in AS_BUILT_DESIGNS] == ["not replayed", "—", "not replayed", "—"]
    # the matrix of README's designs keeps its columns and leaves the as-built designs out
    matrix = md.split("## Design × property")[1].split("\n## ")[0]
    assert "EveryoneSees" not in matrix and "as_built" not in matrix
    # every as-built counterexample is drawn, with the tabs' view
    stems = [k[4:-4] for k in files if k.startswith("cex/as_built") and k.endswith(".svg")]
    assert sorted(stems) == sorted(
        [
            f"as_built-{p}"
            for p in (
                "NoDuplicates",
                "HealOnlyMissing",
                "HealsTerminate",
                "Converges",
                "PendingDrains",
                "EveryoneSees",
            )
        ]
        + [f"{REFRESH.replace(',', '+')}-{p}" for p in ("Converges", "EveryoneSees")]
    )
    assert 'class="shown"' in files["cex/as_built-EveryoneSees.svg"]
    assert "tab 0 never shows m1" in files["cex/as_built-EveryoneSees.svg"]
    assert "| clock | tab 0 shows (cursor) | tab 1 shows (cursor) |" in files["cex/as_built-EveryoneSees.md"]
    # both presets are implemented, so their counterexamples are replayable
    assert not (PRESETS["as_built"] | PRESETS["as_built_fixed"]) & MODELLED_ONLY
    assert "not replayable" not in md


def test_readme_table_leaves_the_as_built_designs_out():
    assert readme_table(list(records())) == readme_table(list(records())[:1])


def test_report_command_on_the_refresh_designs(tmp_path, monkeypatch):
    """The command on the refresh designs: checked and reported; z3 at fixed size decides the
    control, whose properties all hold (by the strengthening for the fix and the shown
    ranking); the refresh design's two lassos replay on the real system (full_poll is
    implemented) and show the same violations there."""
    import kvheal.report_cmd as report_cmd

    from .conftest import kvheal_here

    monkeypatch.setattr(report_cmd, "model_digest", lambda: "pinned")
    out = tmp_path / "rep"
    proc = kvheal_here("report", "--out", str(out), "--designs", f"{REFRESH};{REFRESH_CONTROL}", "-q")
    assert proc.returncode == 0, proc.stderr
    cache = json.loads((out / ".kvheal-cache.json").read_text())
    checks = [r for r in cache.values() if "design" in r]
    replays = [r for k, r in cache.items() if "replay" in json.loads(k)]
    assert sorted(r["design"] for r in checks) == sorted([REFRESH, REFRESH_CONTROL])
    z3 = {r["design"]: r.get("z3") for r in checks}
    assert z3[REFRESH] is None
    assert {p: v["status"] for p, v in z3[REFRESH_CONTROL].items()} == {
        p: "holds" for p in cache_props(cache, REFRESH_CONTROL)
    }
    assert [sorted(r) for r in replays] == [["Converges", "EveryoneSees"]]
    assert all(v["reproduced"] for v in replays[0].values())
    assert (out / "replay").is_dir() and (out / "smt").is_dir()
    md = (out / "report.md").read_text()
    stem = REFRESH.replace(",", "+")
    assert (out / "cex" / f"{stem}-Converges.svg").is_file()
    assert f"| [{REFRESH}: Converges](cex/{stem}-Converges.md) | lasso |" in md
    assert "| 2 of 2 reproduced |" in md and "not replayable" not in md
    assert "(on as_built,atomic_cache,dedupe,full_poll); the same without reload (control): confirmed" in md
    n = len(z3[REFRESH_CONTROL])
    assert f"| explicit | agrees ({n} of {n}) | — |" in md


def cache_props(cache, design):
    return next(r["properties"] for r in cache.values() if r.get("design") == design)


def test_a_preset_that_gains_a_flag_is_checked_again(monkeypatch):
    """The cache is keyed by a design's flags too: as_built keeps its name when it gains one."""
    import kvheal.flags as flags
    from kvheal.report_cmd import cache_key

    before = cache_key("as_built", 2, "digest")
    assert json.loads(before)["flags"] == sorted(PRESETS["as_built"])
    monkeypatch.setitem(flags.PRESETS, "as_built", PRESETS["as_built"] - {"reload"})
    assert cache_key("as_built", 2, "digest") != before
