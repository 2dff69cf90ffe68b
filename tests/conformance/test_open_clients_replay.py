"""The open clients of SPEC §6 on the real worker and clients: heals sent without waiting
(``fire_and_forget``), a failed POST sent again with the same id (``repost``), a tab on the AI
channel (``ai_channel``) and a tab whose clock is one lag behind (``clock_skew``).

For each flag the model's counterexamples at a small size replay call by call on real SQLite
and show the same violation there, and the lockstep machine drives the flag's actions (a
scripted run through the new steps, and a short Hypothesis run).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from kvheal.conformance.lockstep import lockstep_machine
from kvheal.conformance.replay import replay
from kvheal.model import Config

from .make_open_clients_traces import FIXTURES, generate, path
from .replaying import assert_cli_replays, assert_replays, checked

ID0, ID1 = "1761868800000-5feceb", "1761868801000-6b86b2"


def _checked(tabs: int, per_tab: int, variants: str):
    return checked(tabs, per_tab, variants=variants)


def _replays(tabs: int, per_tab: int, variants: str, expected: dict, tmp_path) -> None:
    """Every violated property of the design reproduced on real SQLite (`assert_replays`)."""
    assert_replays(*_checked(tabs, per_tab, variants), expected, tmp_path)


def _script(config: Config, steps: list[tuple[str, dict]]) -> dict:
    """Take `steps` in lockstep (Divergence as soon as the two sides differ); the last view."""
    machine = lockstep_machine(config)()
    try:
        machine.start()
        for name, args in steps:
            machine.do(name, **args)
        view = machine.system.view()
        assert view == machine.model.view(machine.state)
        return view
    finally:
        machine.teardown()


def _hypothesis(config: Config, examples: int) -> None:
    run_state_machine_as_test(
        lockstep_machine(config), settings=settings(settings.default, max_examples=examples)
    )


# -- fire_and_forget: two heals of one id in flight ------------------------------------------

#: property -> (trace length, steps replayed (a lasso's loop twice; HealOnlyMissing's faulty
#: step taken), a piece of the evidence read off the real system)
FIRE_AND_FORGET_T2 = {
    "NoDuplicates": (9, 9, f"id {ID0} occurs 2 times in the real cache"),
    "Converges": (16, 20, f"acknowledged {ID0} absent from the real cache"),
    "PendingDrains": (22, 29, f"live tab 0's pending store still holds ['{ID0}']"),
}
AS_BUILT_FIRE_AND_FORGET_T1 = {
    "HealOnlyMissing": (8, 9, f"tab 0 sent a heal request for {ID0}, which the cache its poll read holds"),
    "HealsTerminate": (19, 19, f"tab 0 sent 4 heal requests for {ID0} (the bound is 3)"),
    "Converges": (10, 12, f"acknowledged {ID0} absent from the real cache []"),
    "PendingDrains": (29, 39, f"live tab 0's pending store still holds ['{ID0}']"),
    "EveryoneSees": (10, 12, f"live tab 0 has not shown {ID0} (its page shows [])"),
}


def test_fire_and_forget_counterexamples_replay_at_tabs_2(tmp_path):
    """fire_and_forget at tabs 2 (153,798 states): the seed design's violations, on real SQLite."""
    _replays(2, 1, "fire_and_forget", FIRE_AND_FORGET_T2, tmp_path)


def test_as_built_fire_and_forget_counterexamples_replay_at_one_tab(tmp_path):
    """as_built,fire_and_forget (2,826 states at one tab; past the budget at tabs 2, SPEC §6): a
    fourth heal of one id, with two of them in flight (PendingDrains' lasso takes HealKey2)."""
    _replays(1, 1, "as_built,fire_and_forget", AS_BUILT_FIRE_AND_FORGET_T1, tmp_path)
    _, result = _checked(1, 1, "as_built,fire_and_forget")
    assert "HealKey2" in [s.action for s in result.properties["PendingDrains"].trace]


FAILED_PUT = [
    ("PostKey", {"m": 0}),
    ("PostRead", {"m": 0}),
    ("PostWriteFail", {"m": 0}),
    ("PostAck", {"m": 0}),
]
TWO_HEALS = FAILED_PUT + [("PollRead", {"t": 0}), ("PollDone", {"t": 0})] * 2


@pytest.mark.parametrize("newer_first", [False, True])
def test_two_heals_of_one_id_in_flight_in_lockstep(newer_first):
    """Two polls miss m0 (its cache put failed): the tab sends a second heal while the first is
    in flight. Either may finish first; when the older does, the newer becomes the model's
    ``heal`` (``heal := heal2``). The one left reads the cache the first wrote: a duplicate."""
    config = Config.make(tabs=1, cap=2, variants="fire_and_forget,put_fails")
    keyed = [("HealKey", {"m": 0}), ("HealKey2", {"m": 0})]
    view = _script(config, TWO_HEALS + keyed)
    assert (view["heal"], view["heal2"]) == ({0: ("KeyRead",)}, {0: ("KeyRead",)})
    first = (
        [("HealRead2", {"m": 0}), ("HealWrite2", {"m": 0})]
        if newer_first
        else [("HealRead", {"m": 0}), ("HealWrite", {"m": 0})]
    )
    view = _script(config, TWO_HEALS + keyed + first)
    assert (view["cache"], view["heal"], view["heal2"]) == ((0,), {0: ("KeyRead",)}, {0: ("Idle",)})
    view = _script(config, TWO_HEALS + keyed + first + [("HealRead", {"m": 0}), ("HealWrite", {"m": 0})])
    assert (view["cache"], view["heal"], view["heal2"], view["pending"]) == (
        (0, 0),
        {0: ("Idle",)},
        {0: ("Idle",)},
        ((0,),),
    )


def test_a_third_heal_waits_for_a_slot():
    """With two heals of m0 in flight a third poll that misses m0 sends none (the model's
    bound; the deployed app's client has none: ``heals_in_flight=None``)."""
    config = Config.make(tabs=1, cap=2, variants="fire_and_forget,put_fails")
    view = _script(config, TWO_HEALS + [("PollRead", {"t": 0}), ("PollDone", {"t": 0})])
    assert (view["heal"], view["heal2"]) == ({0: ("Requested",)}, {0: ("Requested",)})


@pytest.mark.parametrize(
    "tabs, variants",
    [
        (2, "fire_and_forget"),
        (2, "as_built,fire_and_forget"),
        (1, "fire_and_forget,put_fails"),
    ],
)
def test_lockstep_fire_and_forget(tabs, variants):
    _hypothesis(Config.make(tabs=tabs, variants=variants), 20)


# -- repost: a failed POST sent again with the same id ---------------------------------------

REPOST_ATOMIC_T2 = {
    "NoDuplicates": (5, 5, f"id {ID0} occurs 2 times in the real cache"),
    "Converges": (17, 26, f"acknowledged {ID0} absent from the real cache"),
    "PendingDrains": (17, 26, f"live tab 0's pending store still holds ['{ID0}']"),
}
REPOST_T2 = {
    "NoDuplicates": (7, 7, f"id {ID0} occurs 2 times in the real cache"),
    "Converges": (14, 18, f"acknowledged {ID0} absent from the real cache"),
    "PendingDrains": (20, 31, f"live tab 0's pending store still holds ['{ID0}']"),
}
AS_BUILT_REPOST_T1_K2 = {
    "NoDuplicates": (7, 7, f"id {ID0} occurs 2 times in the real cache"),
    "HealOnlyMissing": (8, 9, f"tab 0 sent a heal request for {ID0}, which the cache its poll read holds"),
    "HealsTerminate": (17, 17, f"tab 0 sent 3 heal requests for {ID0} (the bound is 2)"),
    "Converges": (13, 17, f"acknowledged {ID0} absent from the real cache []"),
    "PendingDrains": (27, 36, f"live tab 0's pending store still holds ['{ID0}']"),
    "EveryoneSees": (13, 17, f"live tab 0 has not shown {ID0} (its page shows ['{ID1}'])"),
}


@pytest.mark.parametrize(
    "tabs, per_tab, variants, expected",
    [
        (2, 1, "atomic_cache,post_fails,repost", REPOST_ATOMIC_T2),  # 4,352 states
        (2, 1, "post_fails,repost", REPOST_T2),  # 26,867 states
        (1, 2, "as_built,repost", AS_BUILT_REPOST_T1_K2),  # 834,605 states (compiled: about 1 s)
    ],
    ids=["atomic_cache", "seed", "as_built"],
)
def test_repost_counterexamples_replay(tabs, per_tab, variants, expected, tmp_path):
    """The worker as deployed (`repost`) writes a resent id's key and caches it again: with an
    atomic update the answer lost after the cache write makes the resend a duplicate in 5 steps."""
    _replays(tabs, per_tab, variants, expected, tmp_path)
    _, result = _checked(tabs, per_tab, variants)
    assert "PostAgain" in [s.action for s in result.properties["NoDuplicates"].trace]


AS_BUILT_REPOST = json.loads(path("as_built_repost_t2").read_text())
AS_BUILT_REPOST_T2 = {
    "NoDuplicates": (7, 7, f"id {ID0} occurs 2 times in the real cache"),
    "HealOnlyMissing": (8, 9, f"tab 0 sent a heal request for {ID0}, which the cache its poll read holds"),
    "HealsTerminate": (17, 17, f"tab 0 sent 3 heal requests for {ID0} (the bound is 2)"),
    "Converges": (16, 22, f"acknowledged {ID0} absent from the real cache []"),
    "PendingDrains": (30, 41, f"live tab 0's pending store still holds ['{ID0}']"),
    "EveryoneSees": (15, 21, f"live tab 1 has not shown {ID0} (its page shows ['{ID1}'])"),
}


@pytest.mark.parametrize("name", list(AS_BUILT_REPOST_T2))
def test_as_built_repost_counterexamples_replay_at_tabs_2(name, tmp_path):
    """All six as_built,repost counterexamples at tabs 2 (data/as_built_repost_t2.json, 43M
    states); four of them resend a failed POST (PostAgain)."""
    assert AS_BUILT_REPOST["states"] == 43_155_719
    config = Config.make(tabs=2, variants="as_built,repost")
    trace = AS_BUILT_REPOST["properties"][name]["trace"]
    length, steps, evidence = AS_BUILT_REPOST_T2[name]
    assert len(trace) == length
    r = replay(config, name, trace, path=str(tmp_path / "kv.sqlite3"))
    assert (r.status, r.diverged, len(r.steps)) == ("violated", "", steps)
    assert evidence in r.evidence


def test_a_resent_post_in_lockstep():
    """The answer to m0's POST is lost after its cache update; the tab sends it again: the worker
    writes comment:<id> again, caches m0 a second time, and the tab records it as pending."""
    config = Config.make(tabs=2, variants="atomic_cache,post_fails,repost")
    posted = [("PostKey", {"m": 0}), ("PostCache", {"m": 0}), ("PostFail", {"m": 0})]
    view = _script(config, posted)
    assert (view["post"][0], view["cache"], view["pending"]) == (("Failed",), (0,), ((), ()))
    view = _script(config, posted + [("PostAgain", {"m": 0}), ("PostCache", {"m": 0}), ("PostAck", {"m": 0})])
    assert (view["post"][0], view["cache"], view["pending"]) == (("Acked",), (0, 0), ((0,), ()))


@pytest.mark.parametrize("variants", ["atomic_cache,post_fails,repost", "as_built,repost"])
def test_lockstep_repost(variants):
    _hypothesis(Config.make(tabs=2, variants=variants), 20)


def test_validate_accepts_a_resent_post():
    """`kvheal validate` reads a second put comment:<id> by a new request as PostAgain."""
    from kvheal.conformance.validate import OK, validate_records

    from .test_validate import logged_run

    puts = 0
    for seed in range(6):
        records, ids, config = logged_run("atomic_cache,post_fails,repost", seed)
        puts += sum(r.get("op") == "put" and r.get("key", "").startswith("comment:") for r in records)
        v = validate_records(records, tabs=2, variants=config.variants, ids=ids)
        assert v.status == OK, (seed, v.reason)
    assert puts > 12  # some message was posted again


# -- ai_channel: the last tab's page shows the AI channel --------------------------------------

#: tab 1 is on the AI channel: its polls return none of the (human) messages
AI_CHANNEL_T2 = {
    "NoDuplicates": (9, 9, f"id {ID0} occurs 2 times in the real cache"),
    "HealsTerminate": (19, 19, f"tab 0 sent 3 heal requests for {ID0} (the bound is 2)"),
    "Converges": (17, 21, f"acknowledged {ID0} absent from the real cache"),
    "PendingDrains": (35, 42, f"live tab 0's pending store still holds ['{ID0}']"),
    "EveryoneSees": (17, 21, f"live tab 0 has not shown {ID1} (its page shows ['{ID0}'])"),
}
AI_FOUND_IN_RESPONSE_T2 = {
    "NoDuplicates": (9, 9, f"id {ID0} occurs 2 times in the real cache"),
    "HealOnlyMissing": (5, 6, f"tab 1 sent a heal request for {ID1}, which the cache its poll read holds"),
    "HealsTerminate": (16, 16, f"tab 1 sent 3 heal requests for {ID1} (the bound is 2)"),
    "Converges": (30, 37, f"acknowledged {ID0} absent from the real cache"),
    "PendingDrains": (30, 37, f"live tab 1's pending store still holds ['{ID1}']"),
    "EveryoneSees": (30, 37, f"live tab 0 has not shown {ID1} (its page shows ['{ID0}'])"),
}
AS_BUILT_AI = json.loads(path("as_built_ai_channel_t2").read_text())
AS_BUILT_AI_T2 = {
    "NoDuplicates": (9, 9, f"id {ID0} occurs 2 times in the real cache"),
    "HealOnlyMissing": (5, 6, f"tab 1 sent a heal request for {ID1}, which the cache its poll read holds"),
    "HealsTerminate": (16, 16, f"tab 1 sent 3 heal requests for {ID1} (the bound is 2)"),
    "Converges": (15, 19, f"acknowledged {ID0} absent from the real cache []"),
    "PendingDrains": (27, 34, f"live tab 0's pending store still holds ['{ID0}']"),
    "EveryoneSees": (15, 19, f"live tab 0 has not shown {ID0} (its page shows [])"),
}


@pytest.mark.parametrize(
    "variants, expected",
    [
        ("tab_view,ai_channel", AI_CHANNEL_T2),  # 263,647 states
        ("tab_view,found_in_response,ai_channel", AI_FOUND_IN_RESPONSE_T2),  # 210,857 states
    ],
    ids=["tab_view", "found_in_response"],
)
def test_ai_channel_counterexamples_replay_at_tabs_2(variants, expected, tmp_path):
    """With found_in_response the AI tab's own (human) posts are never in its answers
    (`GET ?type=ai`): it heals them though the cache its poll read holds them (5 steps)."""
    _replays(2, 1, variants, expected, tmp_path)


@pytest.mark.parametrize("name", list(AS_BUILT_AI_T2))
def test_as_built_ai_channel_counterexamples_replay_at_tabs_2(name, tmp_path):
    """All six as_built,ai_channel counterexamples at tabs 2 (data/as_built_ai_channel_t2.json)."""
    assert AS_BUILT_AI["states"] == 6_451_652
    config = Config.make(tabs=2, variants="as_built,ai_channel")
    trace = AS_BUILT_AI["properties"][name]["trace"]
    length, steps, evidence = AS_BUILT_AI_T2[name]
    assert len(trace) == length
    r = replay(config, name, trace, path=str(tmp_path / "kv.sqlite3"))
    assert (r.status, r.diverged, len(r.steps)) == ("violated", "", steps)
    assert evidence in r.evidence


def test_the_ai_tab_shows_nothing_and_heals_its_own_post():
    """In lockstep: tab 1 (AI channel) posts m1 and shows it at once; its poll asks the worker
    for AI messages only, so the answer is empty, m1 is missing, and the tab heals it although
    the cache its poll read holds it. Tab 0 (human) shows m1."""
    config = Config.make(tabs=2, variants="tab_view,found_in_response,ai_channel")
    posted = [("PostKey", {"m": 1}), ("PostRead", {"m": 1}), ("PostWrite", {"m": 1}), ("PostAck", {"m": 1})]
    polls = [("PollRead", {"t": 1}), ("PollDone", {"t": 1}), ("PollRead", {"t": 0}), ("PollDone", {"t": 0})]
    view = _script(config, posted + polls)
    assert (view["cache"], view["shown"], view["pending"], view["heal"]) == (
        (1,),
        ((1,), (1,)),
        ((), (1,)),
        {0: ("Idle",), 1: ("Requested",)},
    )


@pytest.mark.parametrize("variants", ["as_built,ai_channel", "as_built_fixed,ai_channel"])
def test_lockstep_ai_channel(variants):
    _hypothesis(Config.make(tabs=2, variants=variants), 20)


# -- clock_skew: the last tab's clock is one lag behind ----------------------------------------

#: tab 1's clock is one lag behind: its messages are stamped a tick early, its cursor lags
CLOCK_SKEW_T2 = {
    "NoDuplicates": (9, 9, f"id {ID0} occurs 2 times in the real cache"),
    "HealsTerminate": (19, 19, f"tab 0 sent 3 heal requests for {ID0} (the bound is 2)"),
    "Converges": (17, 21, f"acknowledged {ID0} absent from the real cache"),
    "PendingDrains": (35, 42, f"live tab 0's pending store still holds ['{ID0}']"),
    "EveryoneSees": (17, 21, f"live tab 0 has not shown {ID1} (its page shows ['{ID0}'])"),
}
SKEW_FOUND_IN_RESPONSE_T2 = {
    "NoDuplicates": (9, 9, f"id {ID0} occurs 2 times in the real cache"),
    "HealOnlyMissing": (8, 9, f"tab 0 sent a heal request for {ID0}, which the cache its poll read holds"),
    "HealsTerminate": (17, 17, f"tab 0 sent 3 heal requests for {ID0} (the bound is 2)"),
    "Converges": (17, 21, f"acknowledged {ID0} absent from the real cache"),
    "PendingDrains": (30, 37, f"live tab 0's pending store still holds ['{ID0}']"),
    "EveryoneSees": (17, 21, f"live tab 0 has not shown {ID1} (its page shows ['{ID0}'])"),
}


@pytest.mark.parametrize(
    "variants, expected",
    [
        ("tab_view,clock_skew", CLOCK_SKEW_T2),  # 183,123 states
        ("tab_view,found_in_response,clock_skew", SKEW_FOUND_IN_RESPONSE_T2),  # 184,932 states
    ],
    ids=["tab_view", "found_in_response"],
)
def test_clock_skew_counterexamples_replay_at_tabs_2(variants, expected, tmp_path):
    """The skewed tab's stamps within a tick keep the system's offset (SPEC §6), so its
    messages still order by id in the real cache, as in the model's (timestamp, id) order:
    PendingDrains' lasso, which trims a duplicate among equal timestamps, replays."""
    _replays(2, 1, variants, expected, tmp_path)


AS_BUILT_SKEW = json.loads(path("as_built_clock_skew_t2").read_text())
AS_BUILT_SKEW_T2 = {
    "NoDuplicates": (9, 9, f"id {ID0} occurs 2 times in the real cache"),
    "HealOnlyMissing": (8, 9, f"tab 0 sent a heal request for {ID0}, which the cache its poll read holds"),
    "HealsTerminate": (17, 17, f"tab 0 sent 3 heal requests for {ID0} (the bound is 2)"),
    "Converges": (14, 18, f"acknowledged {ID0} absent from the real cache []"),
    "PendingDrains": (28, 35, f"live tab 0's pending store still holds ['{ID0}']"),
    "EveryoneSees": (14, 18, f"live tab 0 has not shown {ID0} (its page shows [])"),
}


@pytest.mark.parametrize("name", list(AS_BUILT_SKEW_T2))
def test_as_built_clock_skew_counterexamples_replay_at_tabs_2(name, tmp_path):
    """All six as_built,clock_skew counterexamples at tabs 2 (data/as_built_clock_skew_t2.json)."""
    assert AS_BUILT_SKEW["states"] == 5_425_394
    config = Config.make(tabs=2, variants="as_built,clock_skew")
    trace = AS_BUILT_SKEW["properties"][name]["trace"]
    length, steps, evidence = AS_BUILT_SKEW_T2[name]
    assert len(trace) == length
    r = replay(config, name, trace, path=str(tmp_path / "kv.sqlite3"))
    assert (r.status, r.diverged, len(r.steps)) == ("violated", "", steps)
    assert evidence in r.evidence


def test_a_skewed_message_is_behind_the_other_tabs_cursor():
    """In lockstep: tab 0 polls in tick 1 (its cursor moves to 1); then tab 1, whose clock is
    one lag behind, posts m1, stamped 0. m1 reaches the cache, but tab 0's polls never show
    it; tab 1's own cursor lags too, so its polls do."""
    config = Config.make(tabs=2, variants="tab_view,clock_skew")
    steps = [("Tick", {}), ("PollRead", {"t": 0}), ("PollDone", {"t": 0})]
    steps += [("PostKey", {"m": 1}), ("PostRead", {"m": 1}), ("PostWrite", {"m": 1}), ("PostAck", {"m": 1})]
    steps += [("PollRead", {"t": 0}), ("PollDone", {"t": 0}), ("PollRead", {"t": 1}), ("PollDone", {"t": 1})]
    view = _script(config, steps)
    assert (view["clock"], view["cache"], view["ts"], view["cursor"], view["shown"]) == (
        1,
        (1,),
        (0, 0),
        (1, 0),
        ((), (1,)),
    )


@pytest.mark.parametrize(
    "tabs, variants",
    [
        (2, "as_built,clock_skew"),
        (2, "as_built_fixed,clock_skew"),
        (3, "tab_view,clock_skew"),
    ],
)
def test_lockstep_clock_skew(tabs, variants):
    _hypothesis(Config.make(tabs=tabs, variants=variants), 20)


def test_lockstep_every_open_client_flag_at_once():
    """as_built with all four flags at tabs 3: heals without waiting, resends, the AI tab, the
    skewed clock (the last tab is both the AI tab and the skewed one)."""
    _hypothesis(Config.make(tabs=3, variants="as_built,fire_and_forget,repost,ai_channel,clock_skew"), 30)


# -- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, violated",
    [
        (["--tabs", "1", "--variant", "as_built,fire_and_forget"], list(AS_BUILT_FIRE_AND_FORGET_T1)),
        (["--tabs", "2", "--variant", "atomic_cache,post_fails,repost"], list(REPOST_ATOMIC_T2)),
        (
            ["--tabs", "2", "--variant", "tab_view,found_in_response,ai_channel"],
            list(AI_FOUND_IN_RESPONSE_T2),
        ),
    ],
    ids=["fire_and_forget", "repost", "ai_channel"],
)
def test_cli_checks_then_replays(args, violated, tmp_path):
    """`kvheal check ... --json > f; kvheal replay f` exits 1: every violation reproduced."""
    # -q: no progress lines in the output
    assert_cli_replays([*args, "-q"], violated, tmp_path, replay_args=("--backend", "memory"))


@pytest.mark.slow  # the checks: 30-100 s each on two cores
@pytest.mark.parametrize("name", list(FIXTURES))
def test_the_open_clients_fixtures_are_what_check_finds(name):
    assert generate(name) == json.loads(path(name).read_text())
