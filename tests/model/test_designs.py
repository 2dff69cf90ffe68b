"""A user's design (docs/designs.md's example) runs through every engine from its definition."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kvheal.flags import ConfigError
from kvheal.model import Config, KVHealModel, check
from kvheal.model.definition import KVHEAL
from kvheal.model.dsl import ActionDef, DefinitionError
from kvheal.model.prove import prove
from kvheal.options import load_design

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "heal_cas.py"
SPEC = f"{EXAMPLE}:HEAL_CAS"


@pytest.fixture(scope="module")
def design():
    return load_design(SPEC)


def test_the_example_checks_with_its_own_actions(design) -> None:
    cfg = Config.make(tabs=2, variants="dedupe", design=design)
    model = KVHealModel(cfg)
    names = {a.name for a in model.instances}
    assert "HealRetry" in names and "HealWrite" in names
    result = check(model)
    assert (result.states, result.transitions) == (3329, 11786)
    verdicts = {n: (p.status, len(p.trace or [])) for n, p in result.properties.items()}
    assert verdicts == {
        "AckedIsStored": ("holds", 0),
        "CacheFromStore": ("holds", 0),
        "NoDuplicates": ("holds", 0),
        "Converges": ("violated", 16),
        "PendingDrains": ("holds", 0),
    }


def test_the_seed_of_the_example_still_duplicates(design) -> None:
    result = check(KVHealModel(Config.make(tabs=2, design=design)))
    assert (result.states, result.transitions) == (4795, 15954)
    assert result.properties["NoDuplicates"].status == "violated"
    assert len(result.properties["NoDuplicates"].trace) == 9


def test_a_lost_swap_retries_and_a_won_swap_writes(design) -> None:
    """In every reachable state a heal holding a snapshot can either swap (the cache still
    equals its snapshot) or retry (it does not), never both; and both happen somewhere."""
    model = KVHealModel(Config.make(tabs=2, variants="dedupe", design=design))
    seen, queue, retries, writes = set(model.init_states()), list(model.init_states()), 0, 0
    for s in queue:
        view = model.view(s)
        names = {(model.instances[lab].name, model.instances[lab].pairs): t for lab, t in model.successors(s)}
        for m, phase in view["heal"].items():
            retry, write = ("HealRetry", (("m", m),)) in names, ("HealWrite", (("m", m),)) in names
            if phase[0] == "CacheRead":
                assert retry != write
                assert write == (phase[1] == view["cache"])
                if retry:
                    retries += 1
                    assert model.view(names[("HealRetry", (("m", m),))])["heal"][m] == ("KeyRead",)
                writes += write
        for _, t in model.successors(s):
            if t not in seen:
                seen.add(t)
                queue.append(t)
    assert retries > 0 and writes > 0


def test_z3_proves_no_duplicates_for_the_user_design(design) -> None:
    result = prove(Config.make(tabs=2, variants="dedupe", design=design), properties={"NoDuplicates"})
    pf = result.properties["NoDuplicates"]
    assert pf.status in ("proved", "holds"), pf.note
    assert "induction" in pf.method


def test_derive_refuses_an_unknown_action() -> None:
    with pytest.raises(DefinitionError, match="no action 'Nope'"):
        KVHEAL.derive("x", replace=[ActionDef("Nope", "m", "request", lambda *a: None)])


def test_kvheal_definition_is_unchanged_by_deriving(design) -> None:
    assert "HealRetry" not in {a.name for a in KVHEAL.actions}
    assert len(design.actions) == len(KVHEAL.actions) + 1


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nowhere.py:X", "no such file nowhere.py"),
        (f"{EXAMPLE}:NOPE", "has no Definition named 'NOPE'"),
        ("design.txt", "wants path/to/module.py:NAME"),
    ],
)
def test_bad_design_paths_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_design(spec)
    proc = subprocess.run(
        [sys.executable, "-m", "kvheal", "check", "--design", spec],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


def test_cli_checks_a_user_design() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvheal",
            "check",
            "--design",
            SPEC,
            "--tabs",
            "2",
            "--variant",
            "dedupe",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["states"], out["transitions"]) == (3329, 11786)


def test_a_flag_the_design_lacks_is_refused(design) -> None:
    with pytest.raises(ConfigError, match="unknown variant 'bogus'"):
        Config.make(tabs=2, variants="bogus", design=design)
