"""`kvheal report`: golden Markdown of a small report, the cache, errors, README's table."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from kvheal.model.report import (
    all_tabs_record,
    assemble,
    config_of,
    readme_section,
    readme_table,
    readme_table_from_verdicts,
    record_of,
    slug,
    z3_record,
)

from .conftest import checked, kvheal_here

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GOLDEN = HERE / "golden" / "report.md"
VERDICTS = HERE / "verdicts_tabs2.json"
META = {
    "version": "0.1.0",
    "command": "kvheal report --designs 'seed;atomic_cache,dedupe'",
    "tabs": 2,
    "mode": "quick",
    "skipped": [],
}


def records_config(rec):
    return config_of(rec["design"], rec["tabs"])


def small_records():
    from kvheal.model.param import prove_all_tabs
    from kvheal.model.prove import prove

    records = []
    for variants in ("", "dedupe,atomic_cache"):
        rec = record_of(*checked(variants))
        rec["seconds"] = 0.5  # the one figure that varies between runs
        records.append(rec)
    from kvheal.model.smtlib import capture, paired

    records[1]["all_tabs"] = all_tabs_record(prove_all_tabs({"atomic_cache", "dedupe"}))
    with capture() as calls:
        fixed = prove(records_config(records[1]))
    records[1]["z3"] = {n: {**v, "seconds": 0.5} for n, v in z3_record(fixed).items()}
    records[1]["z3_queries"] = paired(fixed, calls)
    return records


def test_golden_markdown():
    files = assemble(small_records(), META)
    text = files["report.md"]
    if os.environ.get("KVHEAL_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "set KVHEAL_UPDATE_GOLDEN=1 to accept a new golden file"
    )


def test_markdown_and_html_say_the_same():
    files = assemble(small_records(), META)
    md, page = files["report.md"], files["index.html"]
    stems = [slug("seed", p) for p in ("NoDuplicates", "Converges", "PendingDrains")]
    assert sorted(k for k in files if k.startswith("cex/")) == sorted(
        f"cex/{s}.{ext}" for s in stems for ext in ("svg", "md", "itf.json")
    )
    for s in stems:
        assert f'id="{s}"' in page and f"(cex/{s}.md)" in md
        assert files[f"cex/{s}.svg"] in page  # the diagram inline, as written beside it
    for row in re.findall(r"^\| (seed|atomic_cache,dedupe) \|.*$", md, flags=re.M):
        assert f"<td>{row}</td>" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "<link" not in page and "src=" not in page  # nothing fetched
    assert json.loads(files["verdicts.json"])["records"][0]["properties"]["Converges"] == {
        "status": "violated",
        "length": 16,
    }


def test_report_command_and_its_cache(tmp_path, monkeypatch):
    # in this process with the model's digest pinned: an edit of the model by someone else
    # between the runs must not make the cache miss here (it would, rightly, in real use)
    import kvheal.report_cmd as report_cmd

    monkeypatch.setattr(report_cmd, "model_digest", lambda: "pinned")
    out = tmp_path / "rep"
    args = ("report", "--out", str(out), "--designs", "seed;dedupe,atomic_cache", "-q")
    proc = kvheal_here(*args)
    assert proc.returncode == 0, proc.stderr
    for name in (
        "index.html",
        "report.md",
        "verdicts.json",
        "cex/seed-Converges.svg",
        "cex/seed-Converges.itf.json",
        "cex/seed-Converges.md",
        "smt/atomic_cache+dedupe/001-init.smt2",
        "smt/tabs-2/atomic_cache+dedupe/001-init-AckedIsStored.smt2",
    ):
        assert (out / name).is_file(), name
    md = (out / "report.md").read_text()
    assert "| seed | holds | holds |" in md
    # every counterexample replayed on the real worker (kvheal replay, SQLite): the seed's three show
    assert md.count("| reproduced on the real system: ") == 3
    assert "[Converges violated](cex/seed-Converges.md) (reproduced on the real system)" in md
    cache_file = out / ".kvheal-cache.json"
    cache = json.loads(cache_file.read_text())
    checks = {k: v for k, v in cache.items() if "record" in json.loads(k)}
    assert len(checks) == 2 and len(cache) == 3  # and the seed's replay
    # a second run takes its verdicts from the cache: plant a figure only the cache has
    for key, rec in checks.items():
        if rec["design"] == "seed":
            rec["states"] = 12345
            assert json.loads(key)["design"] == "seed" and json.loads(key)["model"] == "pinned"
    cache_file.write_text(json.dumps(cache))
    assert kvheal_here(*args).returncode == 0
    assert "| 12,345 |" in (out / "report.md").read_text()
    assert kvheal_here(*args, "--no-cache").returncode == 0
    assert "| 7,070 |" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "args", [("--designs", "seed;bogus"), ("--tabs", "0"), ("--quick", "--out", "README.md")]
)
def test_usage_errors(args, tmp_path):
    proc = kvheal_here("report", *(a if a != "README.md" else str(ROOT / "README.md") for a in args))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_readme_table_is_generated():
    """README's verdict table is the report's verdicts.json rendered (recorded by a --full run)."""
    data = json.loads(VERDICTS.read_text())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_section(readme) == readme_table_from_verdicts(data)


def test_recorded_verdicts_are_current():
    """The recorded verdicts of the designs that check in a second agree with a fresh check."""
    data = {r["design"]: r for r in json.loads(VERDICTS.read_text())["records"]}
    for design in (
        "seed",
        "dedupe",
        "keep_verifying",
        "atomic_cache",
        "tab_crash",
        "dedupe,keep_verifying",
        "atomic_cache,dedupe",
        "dedupe,tab_crash",
    ):
        rec = record_of(*checked("" if design == "seed" else design))
        assert rec["design"] == design
        fresh = readme_table([rec])
        assert fresh == readme_table_from_verdicts({"records": [data[design]]}), design


def test_max_states_gives_unknown_not_holds(tmp_path):
    proc = kvheal_here(
        "report", "--out", str(tmp_path), "--designs", "seed", "--tabs", "3", "--max-states", "50", "-q"
    )
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "report.md").read_text()
    assert "| seed | unknown | unknown | unknown | unknown | unknown | 50 |" in md
    assert f"`kvheal report --out {tmp_path} --quick --tabs 3 --designs seed --max-states 50`" in md
    assert "explicit (incomplete)" in md
    assert "unknown (Converges: the search stopped at --max-states)" in md
    assert "holds" not in md.split("## Design")[1].split("## ")[0]


def test_stress_section_from_measurements():
    """The real system's section from kvheal stress records (synthetic here: running the real
    system is stress's own tests' business); a failed measurement is shown, not dropped."""
    import xml.etree.ElementTree as ET

    def summary(acked, missing, polls):
        return {
            "runs": 3,
            "acked": acked,
            "missing_after_post": missing,
            "missing_after_heal": 0,
            "lost": 0,
            "duplicates": 0,
            "converged_runs": 3,
            "converge_polls_max": polls,
            "heals_sent": missing,
        }

    stress = [
        {
            "design": "seed",
            "tabs": 2,
            "runs": 3,
            "command": "kvheal stress --tabs 2",
            "summary": summary(6, 3, 1),
        },
        {
            "design": "seed",
            "tabs": 8,
            "runs": 3,
            "command": "kvheal stress --tabs 8",
            "summary": summary(24, 18, 3),
        },
        {
            "design": "atomic_cache,dedupe",
            "tabs": 8,
            "runs": 3,
            "command": "kvheal stress --tabs 8 --variant x",
            "summary": summary(24, 0, 0),
        },
        {
            "design": "dedupe",
            "tabs": 8,
            "runs": 3,
            "command": "kvheal stress --tabs 8 --variant dedupe",
            "error": "exit 2: kvheal: error: no port",
        },
    ]
    files = assemble(small_records(), META, stress)
    md = files["report.md"]
    assert "## The real system under stress" in md
    assert "| seed | 8 | 3 runs, 24 acked | 18 (75%) | 0 | 0 | 0 | 3 of 3; polls ≤ 3 | 18 |" in md
    assert "| dedupe | 8 | failed: exit 2: kvheal: error: no port |" in md
    assert "Measured by this report: see [the real system](#the-real-system-under-stress)" in md
    root = ET.fromstring(files["stress/missing.svg"])
    dots = [c for c in root.iter("{http://www.w3.org/2000/svg}circle")]
    assert len(dots) == 3  # two seed points, one atomic_cache,dedupe point; the failure has none
    assert files["stress/polls.svg"] in files["index.html"]
    assert json.loads(files["stress/stress.json"]) == stress
    assert "stress/missing.svg" not in assemble(small_records(), META)  # no measurements, no section


def test_z3_column_says_whether_the_engines_agree():
    from kvheal.model.report import _z3_cell

    rec = small_records()[1]
    assert _z3_cell(rec) == "agrees (5 of 5)"
    rec["z3"]["Converges"]["status"] = "violated"
    assert _z3_cell(rec) == "DIFFERS on Converges (z3 violated)"
    assert _z3_cell(small_records()[0]) == "—"
