"""Every counterexample `kvheal check` finds at tabs 2 is a real bug: replayed call by call
through the real worker and clients on real SQLite, it shows the same violation there."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kvheal.cli import main
from kvheal.conformance.replay import replay
from kvheal.flags import IMPL_VARIANTS, MODELLED_ONLY, PRESETS, REQUIRES
from kvheal.model import Config, KVHealModel, check

from ..model.test_verdicts import TABLE

#: SPEC §5's flags (the as-built ones: tests/conformance/test_as_built_replay.py; the bot's:
#: test_bot_replay.py; fire_and_forget's: test_open_clients_replay.py; statuses':
#: test_statuses_replay.py; bot_replies': test_bot_replies_replay.py)
VARIANTS = [
    v
    for v in IMPL_VARIANTS
    if v not in PRESETS["as_built"]
    and v not in REQUIRES
    and v not in ("bot_scan", "bot_claims", "claim_cas", "fire_and_forget", "statuses", "bot_replies")
]

# shared_pending alone has its own slow test below: its 6.2M states take over a minute and
# about 3.9 GiB to check.
DESIGNS = (
    [""] + [v for v in VARIANTS if v != "shared_pending"] + [f"dedupe,{v}" for v in VARIANTS if v != "dedupe"]
)

#: design -> the properties violated at tabs 2: the model's verdict table, pinned once in
#: tests/model/test_verdicts.py (shared_pending alone is a slow case there, so it is here)
VIOLATED = {design: [p for p, length in row.items() if length] for design, row in TABLE.items()}
VIOLATED["shared_pending"] = ["NoDuplicates", "Converges", "PendingDrains"]


@pytest.mark.parametrize("variants", DESIGNS, ids=lambda v: v or "seed")
def test_every_counterexample_replays_on_real_sqlite(variants, tmp_path):
    _replay_all(variants, tmp_path)


@pytest.mark.slow  # 6.2M states, about 3.9 GiB: out of the default run (`pytest -m slow` runs it)
def test_shared_pending_counterexamples_replay_on_real_sqlite(tmp_path):
    """The one design left: about 80 s to check (6,225,349 states), under a second to replay."""
    _replay_all("shared_pending", tmp_path)


def _replay_all(variants, tmp_path):
    config = Config.make(tabs=2, variants=variants)
    result = check(KVHealModel(config))
    violated = [n for n, p in result.properties.items() if p.status == "violated"]
    assert violated == VIOLATED[variants]
    for name in violated:
        r = replay(
            config,
            name,
            result.properties[name].trace,
            backend="sqlite",
            path=str(tmp_path / f"{name}.sqlite3"),
        )
        assert r.diverged == ""
        assert r.reproduced, (name, r.evidence)
        if name == "NoDuplicates":
            assert "occurs 2 times in the real cache" in r.evidence
        elif name == "Converges":
            assert "absent from the real cache" in r.evidence
        else:
            assert "pending store still holds" in r.evidence


def _run(args, stdin=None):
    result = CliRunner().invoke(main, args, input=stdin)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def seed_check(tmp_path_factory):
    path = tmp_path_factory.mktemp("check") / "check.json"
    out = subprocess.run(
        [sys.executable, "-m", "kvheal", "check", "--tabs", "2", "--json"], capture_output=True, text=True
    )
    assert out.returncode == 1
    path.write_text(out.stdout)
    return path


def test_cli_replays_every_violation_of_a_check_file(seed_check):
    code, out = _run(["replay", str(seed_check), "--json"])
    assert code == 1
    data = json.loads(out)
    assert [r["property"] for r in data["results"]] == ["NoDuplicates", "Converges", "PendingDrains"]
    assert all(r["reproduced"] and r["backend"] == "sqlite" for r in data["results"])
    assert [r["status"] for r in data["results"]] == ["violated"] * 3  # the shared verdict
    assert data["config"] == {"tabs": 2, "per_tab": 1, "cap": 2, "variant": []}


def test_cli_table(seed_check):
    code, out = _run(["replay", str(seed_check), "--property", "NoDuplicates", "--backend", "memory"])
    assert code == 1
    assert "HealWrite(m=0)" in out and "[#0,#0]" in out
    assert "reproduced: id 1761868800000-5feceb occurs 2 times in the real cache" in out


def test_cli_one_trace_from_stdin():
    trace = check(KVHealModel(Config.make(tabs=2, variants="atomic_cache"))).properties["NoDuplicates"].trace
    code, out = _run(
        ["replay", "-", "--property", "NoDuplicates", "--variant", "atomic_cache", "--json"],
        stdin=json.dumps(trace.as_json()),
    )
    assert code == 1
    assert json.loads(out)["results"][0]["reproduced"] is True


@pytest.mark.parametrize(
    "content, args, message",
    [
        ("{bad", [], "is not JSON"),
        (
            '[{"action": "PostRead", "args": {"m": 0}}]',
            ["--property", "NoDuplicates"],
            "the trace does not replay through the model: step 1: PostRead(m=0) is not enabled",
        ),
        ('[{"action": "PostKey", "args": {"m": 0}}]', [], "a bare list of steps needs --property NAME"),
        ('[{"action": "PostKey", "args": {"m": 0}}]', ["--property", "Nope"], "does not apply"),
        ('[{"action": "PostKey", "args": {"m": 0}}]', ["--property", "Converges"], "must be a lasso"),
        ('{"properties": {}}', ["--backend", "mongo"], "unknown backend"),
        ('{"properties": {}}', ["--variant", "turbo"], "unknown variant"),
        *[  # a flag only the model has (none once the implementation has them all)
            (
                '{"properties": {}}',
                ["--variant", ",".join(filter(None, (REQUIRES.get(flag), flag)))],
                f"{flag} is modelled only: the real worker and client",
            )
            for flag in sorted(MODELLED_ONLY)[:1]
        ],
        ("[]", ["--property", "NoDuplicates", "--tabs", "0"], "tabs must be at least 1"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, content, args, message):
    path = tmp_path / "trace.json"
    path.write_text(content)
    code, out = _run(["replay", str(path), *args])
    assert code == 2
    assert message in out
    assert "Traceback" not in out


def test_cli_missing_file():
    code, out = _run(["replay", "/nonexistent/trace.json"])
    assert code == 2 and "cannot read" in out


def test_cli_nothing_violated(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps({"properties": {"Converges": {"status": "holds", "trace": []}}}))
    code, out = _run(["replay", str(path)])
    assert code == 0 and "nothing to replay" in out


def test_cli_replays_a_prove_file(tmp_path):
    """prove --json has check --json's layout, so its counterexamples replay (they used to give
    "nothing to replay" and exit 0)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvheal",
            "prove",
            "--tabs",
            "2",
            "--property",
            "NoDuplicates",
            "--depth",
            "9",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1, out.stderr
    path = tmp_path / "prove.json"
    path.write_text(out.stdout)
    code, text = _run(["replay", str(path), "--backend", "memory", "--json"])
    assert code == 1, text
    data = json.loads(text)
    assert data["config"] == {"tabs": 2, "per_tab": 1, "cap": 2, "variant": []}
    [r] = data["results"]
    assert (r["property"], r["status"], r["reproduced"]) == ("NoDuplicates", "violated", True)
    assert len(r["steps"]) == 9 and "occurs 2 times in the real cache" in r["evidence"]


def test_cli_a_proof_with_nothing_refuted_has_nothing_to_replay(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvheal",
            "prove",
            "--all-tabs",
            "--variant",
            "dedupe,keep_verifying",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    path = tmp_path / "all.json"
    path.write_text(out.stdout)
    code, text = _run(["replay", str(path)])
    assert (code, text.strip()) == (0, "nothing to replay: no property is violated in the file")


@pytest.mark.parametrize(
    "name, cut, message",
    [
        (
            "NoDuplicates",
            1,
            "NoDuplicates: not a counterexample in the model: NoDuplicates holds after step 8, "
            "the last (is the trace truncated?)",
        ),
        (
            "Converges",
            1,
            "Converges: not a counterexample in the model: the loop (steps 13-15) does not return "
            "to the state where it starts (before step 13): is the trace truncated?",
        ),
        (
            "Converges",
            4,
            "Converges: not a counterexample in the model: Converges is a liveness property; its "
            "counterexample must be a lasso",
        ),
    ],
)
def test_cli_refuses_a_truncated_trace(seed_check, tmp_path, name, cut, message):
    """A trace that is not a counterexample in the model is a usage error naming the step,
    never "not reproduced"; nothing is run on the real system."""
    data = json.loads(seed_check.read_text())
    data["properties"] = {name: data["properties"][name]}
    data["properties"][name]["trace"] = data["properties"][name]["trace"][:-cut]
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(data))
    code, out = _run(["replay", str(path), "--backend", "memory"])
    assert code == 2
    assert out.strip().splitlines() == [
        f"kvheal: error: {message}" + (' (steps with "loop": true)' if "lasso" in message else "")
    ]


@pytest.mark.slow
def test_a_z3_lasso_replays_on_the_real_system():
    """A fair lasso found by z3 (not BFS) is a counterexample in the model and on real SQLite."""
    from kvheal.model.prove import find_lasso
    from kvheal.model.symbolic import SymbolicModel

    config = Config.make(tabs=2, variants="dedupe")
    sym = SymbolicModel(config)
    trace, _ = find_lasso(sym, sym.converges_goal, 16)
    assert len(trace) == 16 and trace.loop_start is not None
    r = replay(config, "Converges", trace, backend="memory")
    assert (r.status, r.diverged) == ("violated", "")
    assert "absent from the real cache" in r.evidence
