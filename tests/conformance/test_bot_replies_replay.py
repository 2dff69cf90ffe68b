"""SPEC §6 ``bot_replies`` on the real system: the real bot (``kvheal.impl.bot.Bot``) posts its
reply through POST /api/comments (the model's PostKey..PostAck of message T·K; the answer parks
until the test releases it, the model's PostAck: the bot puts the reply on its list
``to_verify``), verifies it (``verify_once``: the whole cache read, a heal through POST
/api/admin/add-to-cache if missing: BotVerify) and restarts (a new ``Bot``, its list empty:
BotRestart). The flag's counterexamples replay on real SQLite and show their violations, and
Hypothesis drives the bot in lockstep with the model."""

from __future__ import annotations

import json

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from kvheal.conformance.lockstep import lockstep_machine
from kvheal.conformance.replay import replay
from kvheal.conformance.system import message_ids
from kvheal.impl.messages import message_type
from kvheal.model import Config
from kvheal.model.results import VIOLATED

from .replaying import assert_cli_replays, checked

IDS = message_ids(3)


def _checked(tabs: int, variants: str):
    return checked(tabs, variants=variants)


def _script(tabs: int, variants: str, steps: list[tuple[str, dict]]):
    """Run `steps` in lockstep (Divergence at the first difference); the real system's view,
    its bot, the actors that ran, and what else the tests read of it (the KV's contents, the
    pages' channels, the bot's restarts)."""
    machine = lockstep_machine(Config.make(tabs=tabs, variants=variants))()
    try:
        machine.start()
        for name, args in steps:
            machine.do(name, **args)
        system = machine.system
        seen = {
            "kv": system.snapshot().kv,
            "channels": [c.channel for c in system.clients],
            "restarts": system.bot_gen,
        }
        return system.view(), system.reply_bot, [r.key for r in system.keeper.history], seen
    finally:
        machine.teardown()


#: (tabs, variants, property) -> (trace length, evidence the real system shows)
REPLAYS = {
    (1, "bot_replies", "NoDuplicates"): (9, f"id {IDS[0]} occurs 2 times in the real cache"),
    (1, "bot_replies", "Converges"): (18, f"acknowledged {IDS[1]} absent from the real cache"),
    (1, "atomic_cache,dedupe,put_fails,bot_replies", "Converges"): (
        11,
        f"acknowledged {IDS[1]} absent from the real cache",
    ),
    (2, "dedupe,keep_verifying,bot_replies", "Converges"): (
        17,
        f"acknowledged {IDS[2]} absent from the real cache",
    ),
    (1, "as_built_fixed,bot_replies", "Converges"): (12, f"acknowledged {IDS[1]} absent from the real cache"),
    (1, "as_built_fixed,bot_replies", "EveryoneSees"): (12, f"live tab 0 has not shown {IDS[1]}"),
    (1, "as_built_fixed,ai_channel,bot_replies", "EveryoneSees"): (10, f"live tab 0 has not shown {IDS[1]}"),
    # no restart: the bot's stale read (BotVerifyStale) holds the reply a stale heal overwrote
    (1, "tab_view,stale_reads,dedupe,keep_verifying,bot_replies", "Converges"): (
        18,
        f"acknowledged {IDS[1]} absent from the real cache",
    ),
}
#: the counterexamples that need no restart: the reply's list empties on a stale read
STALE = {(1, "tab_view,stale_reads,dedupe,keep_verifying,bot_replies", "Converges")}


@pytest.mark.parametrize("tabs,variants,prop", list(REPLAYS), ids=lambda v: str(v))
def test_the_counterexamples_replay_on_real_sqlite(tabs, variants, prop, tmp_path):
    cfg, result = _checked(tabs, variants)
    trace = result.properties[prop].trace
    length, evidence = REPLAYS[(tabs, variants, prop)]
    assert len(trace) == length
    actions = [s["action"] for s in trace]
    if (tabs, variants, prop) in STALE:  # the bot read a stale cache holding its reply
        assert "BotVerifyStale" in actions and "BotRestart" not in actions
    elif prop == "Converges":  # the reply is lost: its put failed or lost a race, then the restart
        assert "BotRestart" in actions
    r = replay(cfg, prop, trace, backend="sqlite", path=str(tmp_path / "kv.sqlite3"))
    assert (r.reproduced, r.status, r.diverged) == (True, VIOLATED, "")
    assert evidence in r.evidence


LOST = [
    ("PostKey", {"m": 0}),
    ("PostCache", {"m": 0}),
    ("PostAck", {"m": 0}),
    ("PostKey", {"m": 1}),  # the bot replies once message 0 is in the cache
    ("PostCacheFail", {"m": 1}),  # the write limit refuses the reply's cache update; 200 anyway
    ("PostAck", {"m": 1}),  # the bot puts the reply on its list to verify
]


def test_the_bot_heals_its_missing_reply_through_the_tabs_endpoint():
    steps = LOST + [("BotVerify", {}), ("HealKey", {"m": 1}), ("HealCache", {"m": 1}), ("BotVerify", {})]
    view, bot, actors, _ = _script(1, "atomic_cache,dedupe,put_fails,bot_replies", steps)
    assert (view["cache"], view["post"][1], view["verify"]) == ((0, 1), ("Acked",), ())
    assert ("heal", "bot", 1, 0) in actors and ("verify", 0) in actors  # one heal, by the bot
    assert bot.replies == [(IDS[0], IDS[1])] and bot.to_verify == {}


def test_a_restart_forgets_the_reply_and_nothing_heals_it():
    view, bot, _, seen = _script(1, "atomic_cache,dedupe,put_fails,bot_replies", LOST + [("BotRestart", {})])
    assert (view["cache"], view["post"][1], view["verify"]) == ((0,), ("Acked",), ())
    assert bot.to_verify == {} and seen["restarts"] == 1
    stored = json.loads(seen["kv"]["comment:" + IDS[1]])
    assert message_type(stored) == "ai"  # stored, an AI message, never cached again


def test_the_bots_post_fails_before_and_after_its_cache_update():
    """post_fails: a 500 before the cache update (the bot's reply raises), or the answer lost
    after it (the bot's task ends without the 200): the reply is stored, never on the list."""
    pre = [("PostKey", {"m": 0}), ("PostRead", {"m": 0}), ("PostWrite", {"m": 0}), ("PostKey", {"m": 1})]
    view, bot, _, _ = _script(1, "post_fails,bot_replies", pre + [("PostFail", {"m": 1})])
    assert (view["stored"], view["cache"], view["post"][1], bot.to_verify) == ((0, 1), (0,), ("Failed",), {})
    after = pre + [("PostRead", {"m": 1}), ("PostWrite", {"m": 1}), ("PostFail", {"m": 1})]
    view, bot, _, _ = _script(1, "post_fails,bot_replies", after)
    assert (view["cache"], view["post"][1], bot.to_verify) == ((0, 1), ("Failed",), {})


def test_the_ai_tab_shows_the_reply_and_the_human_tab_does_not():
    steps = [("PostKey", {"m": 0}), ("PostCache", {"m": 0}), ("PostKey", {"m": 2}), ("PostCache", {"m": 2})]
    steps += [("PollRead", {"t": 0}), ("PollDone", {"t": 0}), ("PollRead", {"t": 1}), ("PollDone", {"t": 1})]
    view, _, _, seen = _script(2, "tab_view,full_poll,atomic_cache,dedupe,ai_channel,bot_replies", steps)
    assert view["shown"] == ((0,), (2,))
    assert seen["channels"] == ["human", "ai"]


@pytest.mark.parametrize(
    "tabs,variants,examples",
    [
        (1, "bot_replies", 6),
        (1, "atomic_cache,dedupe,put_fails,bot_replies", 6),
        (1, "dedupe,sweeper,bot_replies", 6),
        (1, "as_built,bot_replies", 6),
        (1, "tab_view,stale_reads,dedupe,keep_verifying,bot_replies", 6),
    ],
)
def test_lockstep_bot_replies(tabs, variants, examples):
    run_state_machine_as_test(
        lockstep_machine(Config.make(tabs=tabs, variants=variants)),
        settings=settings(settings.default, max_examples=examples),
    )


@pytest.mark.slow  # some seconds each: two tabs, the reply and more examples
@pytest.mark.parametrize(
    "variants",
    [
        "bot_replies",
        "atomic_cache,dedupe,put_fails,bot_replies",
        "dedupe,sweeper,tab_crash,bot_replies",
        "as_built_fixed,ai_channel,bot_replies",
        "fire_and_forget,post_fails,repost,bot_replies",
        "tab_view,stale_reads,dedupe,keep_verifying,bot_replies",
    ],
)
def test_lockstep_bot_replies_at_tabs_2(variants):
    run_state_machine_as_test(
        lockstep_machine(Config.make(tabs=2, variants=variants)),
        settings=settings(settings.default, max_examples=40),
    )


def test_cli_checks_then_replays(tmp_path):
    """`kvheal check ... --json > f; kvheal replay f` exits 1: every violation reproduced."""
    assert_cli_replays(["--tabs", "1", "--variant", "bot_replies"], ["NoDuplicates", "Converges"], tmp_path)
