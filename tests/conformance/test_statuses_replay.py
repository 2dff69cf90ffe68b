"""SPEC §6 ``statuses`` on the real system: the counterexamples of the designs pinned in
tests/model/test_statuses.py replay on real SQLite and show the same violation there (a cache
copy that is not final while its message's ``status:<id>`` is; the as-built scan's put of the
array it read with nothing patched), the as-built and the fixed scan patch a duplicate's copies
as the model's ``ScanWrite`` and ``ScanPatch`` do, a short Hypothesis lockstep run over the
``statuses`` designs (and one from the duplicate, where the fixed scan has work), and a
completion between the as-built scan's key read and its put, lost alike in the model and on the
real system."""

from __future__ import annotations

import json

import pytest
from hypothesis import settings
from hypothesis.stateful import initialize, run_state_machine_as_test

from kvheal.conformance.lockstep import LockstepMachine, lockstep_machine
from kvheal.conformance.system import InProcessSystem
from kvheal.flags import MODELLED_ONLY, WORKER_VARIANTS
from kvheal.model import Config

from .replaying import assert_cli_replays, assert_replays, checked

ID0 = "1761868800000-5feceb"
#: the real cache's copies of message 0, as the evidence prints them
OPEN, DONE = f"{ID0}:-", f"{ID0}:complete"


def _checked(tabs: int, cap: int | None, variants: str):
    return checked(tabs, cap=cap, variants=variants)


#: (tabs, cap, design) -> property -> (trace length, steps replayed (a lasso's loop twice;
#: ScanWritesNothing's ScanWrite taken), the evidence read off the real system, or a piece of it)
EXPECTED = {
    (1, 2, "statuses"): {
        "NoDuplicates": (9, 9, f"id {ID0} occurs 2 times in the real cache"),
        "StatusesConverge": (
            14,
            16,
            "on each of 2 passes around the loop, which returns to where it started: "
            f"status:{ID0} is complete but copy 2 of the real cache says nothing (['{DONE}', '{OPEN}'])",
        ),
    },
    (1, 2, "statuses,bot_scan"): {
        "NoDuplicates": (9, 9, f"id {ID0} occurs 2 times in the real cache"),
        "ScanWritesNothing": (
            1,
            2,
            "the bot's pending scan put back recent:comments unchanged ([], the array it read): "
            "a write with nothing to change",
        ),
        "Converges": (13, 20, f"acknowledged {ID0} absent from the real cache []"),
        "PendingDrains": (12, 19, f"live tab 0's pending store still holds ['{ID0}']"),
        "StatusesConverge": (
            23,
            35,
            f"status:{ID0} is complete but copy 1 of the real cache says nothing (['{OPEN}', '{OPEN}'])",
        ),
    },
    (1, None, "as_built,statuses,bot_scan"): {
        "HealOnlyMissing": (
            8,
            9,
            f"tab 0 sent a heal request for {ID0}, which the cache its poll read holds",
        ),
        "HealsTerminate": (17, 17, f"tab 0 sent 3 heal requests for {ID0} (the bound is 2)"),
        "ScanWritesNothing": (1, 2, "the bot's pending scan put back recent:comments unchanged ([]"),
        "Converges": (12, 16, f"acknowledged {ID0} absent from the real cache []"),
        "PendingDrains": (26, 34, f"live tab 0's pending store still holds ['{ID0}']"),
        "StatusesConverge": (
            26,
            34,
            f"status:{ID0} is complete but copy 1 of the real cache says nothing (['{OPEN}'])",
        ),
        "EveryoneSees": (12, 16, f"live tab 0 has not shown {ID0} (its page shows [])"),
    },
}


@pytest.mark.parametrize("tabs,cap,variants", list(EXPECTED), ids=lambda v: str(v))
def test_the_pinned_counterexamples_replay_on_real_sqlite(tabs, cap, variants, tmp_path):
    assert_replays(*_checked(tabs, cap, variants), EXPECTED[(tabs, cap, variants)], tmp_path)


def test_the_flag_is_the_real_systems():
    assert "statuses" not in MODELLED_ONLY and "statuses" in WORKER_VARIANTS


# the duplicate of tests/model/test_statuses.py: both copies open, then the key final
_DUPLICATE = [
    ("PostKey", {"m": 0}),
    ("PostRead", {"m": 0}),
    ("PollRead", {"t": 0}),
    ("PostWrite", {"m": 0}),
    ("PostAck", {"m": 0}),
    ("PollDone", {"t": 0}),
    ("HealKey", {"m": 0}),
    ("HealRead", {"m": 0}),
    ("Complete", {"m": 0}),
    ("HealWrite", {"m": 0}),  # the heal read [0] before the completion's patch
]


def _script(config: Config, steps: list[tuple[str, dict]]) -> tuple[dict, list[dict]]:
    """Take `steps` in lockstep (Divergence as soon as the two sides differ); the last view
    and the real cache's entries."""
    machine = lockstep_machine(config, backend="sqlite")()
    try:
        machine.start()
        for name, args in steps:
            machine.do(name, **args)
        system: InProcessSystem = machine.system
        view = system.view()
        assert view == machine.model.view(machine.state)
        kv = system.run(system._kv_contents())
        return view, [
            {k: e[k] for k in ("id", "status") if k in e} for e in json.loads(kv["recent:comments"])
        ]
    finally:
        machine.teardown()


def test_the_as_built_scan_patches_the_first_copy_only():
    config = Config.make(tabs=1, cap=2, variants="statuses,bot_scan")
    view, entries = _script(config, _DUPLICATE)
    assert (view["cache"], view["done"], entries) == ((0, 0), (0,), [{"id": ID0}, {"id": ID0}])
    # the keys start pending (the bot's queue): the completion's put made status:<id> complete,
    # and its patch found no copy (the heal's write came after and put back two open ones)
    view, entries = _script(config, _DUPLICATE + [("ScanRead", {}), ("ScanKeys", {}), ("ScanWrite", {})])
    assert (view["cache"], view["scan"]) == (("0*", 0), ("Idle",))
    assert entries == [{"id": ID0, "status": "complete"}, {"id": ID0}]


def test_the_fixed_scan_patches_every_copy_once():
    config = Config.make(tabs=1, cap=2, variants="statuses")
    view, entries = _script(config, _DUPLICATE + [("ScanPatch", {})])
    assert (view["cache"], view["done"]) == (("0*", "0*"), (0,))
    assert entries == [{"id": ID0, "status": "complete"}, {"id": ID0, "status": "complete"}]


def test_the_completion_patches_every_copy():
    config = Config.make(tabs=1, cap=2, variants="statuses")
    steps = _DUPLICATE[:8] + [("HealWrite", {"m": 0}), ("Complete", {"m": 0})]
    view, entries = _script(config, steps)
    assert (view["cache"], view["done"]) == (("0*", "0*"), (0,))
    assert entries == [{"id": ID0, "status": "complete"}, {"id": ID0, "status": "complete"}]


@pytest.mark.parametrize(
    "tabs,cap,variants,examples",
    [
        (1, 2, "statuses", 15),
        (1, 2, "statuses,bot_scan", 15),
        (1, 2, "dedupe,statuses,sweeper", 10),
        (2, None, "dedupe,atomic_cache,statuses", 10),
        (1, None, "as_built,statuses,bot_scan", 10),
    ],
)
def test_lockstep_statuses(tabs, cap, variants, examples):
    run_state_machine_as_test(
        lockstep_machine(Config.make(tabs=tabs, cap=cap, variants=variants)),
        settings=settings(settings.default, max_examples=examples),
    )


def test_cli_checks_then_replays(tmp_path):
    """`kvheal check ... --json > f; kvheal replay f` exits 1: every violation reproduced."""
    assert_cli_replays(
        ["--tabs", "1", "--cap", "2", "--variant", "statuses,bot_scan"],
        list(EXPECTED[(1, 2, "statuses,bot_scan")]),
        tmp_path,
    )


@pytest.mark.parametrize("variants", ["statuses", "statuses,bot_scan"])
def test_lockstep_from_the_duplicate(variants):
    """Hypothesis from the state of the duplicate (the key final, both copies open): the fixed
    scan's ScanPatch (or the as-built scan's patch of the first copy) is enabled there, which
    a run from the start seldom reaches."""

    @initialize()
    def start(self) -> None:
        LockstepMachine.start(self)
        for name, args in _DUPLICATE:
            self.do(name, **args)

    machine = lockstep_machine(Config.make(tabs=1, cap=2, variants=variants), start=start)
    run_state_machine_as_test(machine, settings=settings(settings.default, max_examples=10))


def test_a_completion_between_the_scans_key_read_and_its_put_is_lost():
    """The model has it (SPEC §6): the as-built scan reads status:<id> (ScanKeys, released
    there) before its put (ScanWrite). A completion in between is patched into the cache and
    then overwritten by the put of the array read before it, in the model and on real SQLite
    alike, step by step; the next scan repairs it."""
    config = Config.make(tabs=1, cap=2, variants="statuses,bot_scan")
    steps = [("PostKey", {"m": 0}), ("PostRead", {"m": 0}), ("PostWrite", {"m": 0})]
    steps += [("ScanRead", {}), ("ScanKeys", {}), ("Complete", {"m": 0})]
    view, entries = _script(config, steps)
    assert (view["cache"], view["done"], view["scan"]) == (("0*",), (0,), ("Keyed", (0,), ()))
    assert entries == [{"id": ID0, "status": "complete"}]
    view, entries = _script(config, steps + [("ScanWrite", {})])
    assert (view["cache"], view["done"], entries) == ((0,), (0,), [{"id": ID0, "status": "pending"}])
    view, entries = _script(
        config, steps + [("ScanWrite", {}), ("ScanRead", {}), ("ScanKeys", {}), ("ScanWrite", {})]
    )
    assert (view["cache"], entries) == (("0*",), [{"id": ID0, "status": "complete"}])


def test_lockstep_releases_the_scans_key_read_as_its_scankeys():
    """The scan's read of status:<id> is a parked KV call lockstep may release in any order:
    the model explains it as ScanKeys."""
    config = Config.make(tabs=1, cap=2, variants="statuses,bot_scan")
    machine = lockstep_machine(config, backend="sqlite")()
    try:
        machine.start()
        for name, args in [("PostKey", {"m": 0}), ("PostRead", {"m": 0}), ("PostWrite", {"m": 0})]:
            machine.do(name, **args)
        machine.do("ScanRead")
        (gate,) = machine.system.kv_gates()
        assert machine.system.describe(gate.call) == "get status:#0"
        machine.release_call(0)
        assert machine.steps[-1].actions == ["ScanKeys()"]
        assert machine.model.view(machine.state)["scan"] == ("Keyed", (0,), ())
    finally:
        machine.teardown()
