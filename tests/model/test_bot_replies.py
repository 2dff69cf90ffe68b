"""SPEC §6 ``bot_replies``: the bot's AI reply to message 0 (one more message, id T·K, no tab's),
posted through the post actions, kept in the bot's in-memory list of replies to verify,
verified against the whole cache (``BotVerify``: seen, it leaves the list; missing, a heal
through the tabs' endpoint) and forgotten by a restart (``BotRestart``, a fault).

The reply is an acknowledged message like any other, so ``Converges`` and ``EveryoneSees``
speak of it (``EveryoneSees`` per channel: with ``ai_channel`` only the AI tab is due it).
The verdict the flag is for: a reply whose POST did not reach the cache is lost for good when
the bot restarts before it verifies it (``Converges`` violated) unless a sweeper repairs the
cache; a design that converges still converges with the reply. Every engine agrees: the
compiled checker and the Python engine, z3's relation (every reachable state), BMC and the lasso
search, and SPIN."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kvheal.cli import main
from kvheal.flags import MODELLED_ONLY, ConfigError
from kvheal.model import Config, KVHealModel, check, render
from kvheal.model.definition import KVHEAL
from kvheal.model.dsl import FlagDef
from kvheal.model.trace import flatten, replay_trace

from .conftest import checked
from .test_promela import spin  # noqa: F401  (the fixture: SPIN and gcc, or a skip)

# (tabs, variants) -> (states, transitions, {violated property: trace length}); per_tab 1, the
# default cap (T + 1: nothing evicted)
PINNED = {
    # the seed: the reply races a heal of message 0 (a duplicate), or is lost to a race and the
    # bot restarts before its verification
    (1, "bot_replies"): (273, 699, {"NoDuplicates": 9, "Converges": 18}),
    # converging designs still converge with the reply: nothing loses it
    (1, "atomic_cache,dedupe,bot_replies"): (105, 280, {}),
    (2, "atomic_cache,dedupe,bot_replies"): (5471, 24047, {}),
    (1, "dedupe,sweeper,bot_replies"): (5419, 21594, {}),
    # the reply's put fails (the write limit), the POST answers 200, the bot restarts: lost
    (1, "atomic_cache,dedupe,put_fails,bot_replies"): (316, 913, {"Converges": 11}),
    (2, "atomic_cache,dedupe,put_fails,bot_replies"): (17171, 80171, {"Converges": 18}),
    # dedupe,keep_verifying converges at tabs 2 (1,318 states); the reply's post loses a race
    # with message 1's, the bot restarts
    (2, "dedupe,keep_verifying,bot_replies"): (33426, 156013, {"Converges": 17}),
    # the fix of SPEC §6 does not save the reply: its failed put and the restart
    (1, "as_built_fixed,bot_replies"): (4142, 14919, {"Converges": 12, "EveryoneSees": 12}),
    (1, "as_built_fixed,sweeper,bot_replies"): (23478, 114097, {}),
    # the only tab is the AI one: due the reply, not its own human message
    (1, "as_built_fixed,ai_channel,bot_replies"): (4134, 14915, {"Converges": 10, "EveryoneSees": 10}),
    # stale reads: the bot's read served the value before the last write sees a reply that a
    # stale heal of message 0 has just overwritten, and drops it (no restart needed)
    (1, "tab_view,stale_reads,dedupe,keep_verifying,bot_replies"): (
        51709,
        226333,
        {"HealsTerminate": 16, "Converges": 18, "EveryoneSees": 14},
    ),
    (1, "as_built_fixed,stale_reads,bot_replies"): (
        23517,
        106454,
        {"HealsTerminate": 13, "Converges": 12, "EveryoneSees": 12},
    ),
    (1, "as_built,bot_replies"): (
        35475,
        115319,
        {
            "NoDuplicates": 9,
            "HealOnlyMissing": 8,
            "HealsTerminate": 17,
            "Converges": 10,
            "PendingDrains": 24,
            "EveryoneSees": 10,
        },
    ),
}
#: past the default run's budget (seconds each): ``pytest -m slow``
SLOW = {
    # the reply lost to a failed put and a restart: unless the sweeper repairs the cache
    (2, "atomic_cache,dedupe,put_fails,sweeper,bot_replies"): (168755, 983839, {}),
    (2, "dedupe,sweeper,bot_replies"): (11255845, 66043691, {}),
    (2, "as_built_fixed,bot_replies"): (2879956, 16314816, {"Converges": 18, "EveryoneSees": 18}),
    # the fix with a sweeper keeps every property with the reply (kvheal prove proves it too)
    (2, "as_built_fixed,sweeper,bot_replies"): (27510388, 192675636, {}),
}


@pytest.mark.parametrize("tabs,variants", list(PINNED), ids=lambda v: str(v))
def test_pinned_counts_and_verdicts(tabs, variants, check_counterexample):
    model, result = checked(tabs, 1, None, variants)
    states, transitions, violated = PINNED[(tabs, variants)]
    assert (result.states, result.transitions) == (states, transitions)
    assert {n: len(p.trace) for n, p in result.properties.items() if p.status == "violated"} == violated
    for name in violated:
        check_counterexample(model, name, result.properties[name].trace)


@pytest.mark.slow
@pytest.mark.parametrize("tabs,variants", list(SLOW), ids=lambda v: str(v))
def test_pinned_counts_and_verdicts_at_tabs_2(tabs, variants):
    result = check(KVHealModel(Config.make(tabs=tabs, variants=variants)))
    states, transitions, violated = SLOW[(tabs, variants)]
    assert (result.states, result.transitions) == (states, transitions)
    assert {n: len(p.trace) for n, p in result.properties.items() if p.status == "violated"} == violated


def test_the_reply_is_one_more_message_no_tab_owns():
    cfg = Config.make(tabs=2, variants="bot_replies")
    assert (cfg.tab_messages, cfg.messages, cfg.reply, cfg.cap) == (2, 3, 2, 3)
    assert [cfg.owner(m) for m in range(cfg.messages)] == [0, 1, None]
    plain = Config.make(tabs=2)
    assert (plain.messages, plain.reply, plain.cap) == (2, None, 2)
    assert "bot_replies" not in MODELLED_ONLY  # the real bot has it (test_bot_replies_replay.py)


def test_combinations_the_model_does_not_honour_fail_fast():
    with pytest.raises(ConfigError, match="bot_replies with shared_pending is not modelled"):
        Config.make(tabs=2, variants="bot_replies,shared_pending")
    with pytest.raises(ConfigError, match=r"bot_replies needs cap >= tabs\*per_tab \+ 1 = 3"):
        Config.make(tabs=2, cap=2, variants="bot_replies")
    res = CliRunner().invoke(main, ["check", "--tabs", "2", "--variant", "bot_replies,shared_pending"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1


def _steps(model, steps):
    return replay_trace(model, [{"action": a, "args": g} for a, g in steps])


def test_the_reply_lifecycle():
    """The bot posts once message 0 is cached; the 200 puts the reply on its list; a pass that
    sees it drops it; a pass that misses it heals it (and none runs while that heal is in
    flight); a restart forgets the list, and is a step only when the list holds something."""
    model = KVHealModel(Config.make(tabs=1, variants="atomic_cache,dedupe,put_fails,bot_replies"))
    s0 = model.init_states()[0]
    assert "PostKey(m=1)" not in [str(a) for a in model.actions(s0)]  # nothing to reply to yet
    posted = [("PostKey", {"m": 0}), ("PostCache", {"m": 0}), ("PostKey", {"m": 1})]
    lost = posted + [("PostCacheFail", {"m": 1}), ("PostAck", {"m": 1})]
    states = _steps(model, lost + [("BotVerify", {}), ("HealKey", {"m": 1})])
    views = [flatten(model.view(s)) for s in states]
    assert [(v["cache"], v["verify"], v["heal[1]"]) for v in views[4:]] == [
        ("[0]", "[]", "Idle"),
        ("[0]", "[1]", "Idle"),  # acknowledged, not cached, on the bot's list
        ("[0]", "[1]", "Requested"),  # the pass misses it: a heal
        ("[0]", "[1]", "KeyRead"),
    ]
    assert not {"BotVerify"} & {a.name for a in model.actions(states[-1])}  # the bot awaits its heal
    healed = _steps(model, lost + [("BotVerify", {}), ("HealKey", {"m": 1}), ("HealCache", {"m": 1})])
    seen = model.step(healed[-1], model.action("BotVerify"))
    assert (flatten(model.view(seen))["cache"], flatten(model.view(seen))["verify"]) == ("[0,1]", "[]")
    assert "BotRestart" not in {a.name for a in model.actions(seen)}  # nothing left to forget
    forgot = model.step(states[5], model.action("BotRestart"))
    assert flatten(model.view(forgot))["verify"] == "[]"
    assert "BotVerify" not in {a.name for a in model.actions(forgot)}  # nobody will heal it


def no_restart():
    """kvheal's definition without BotRestart: a bot that never forgets its list."""
    flags = [
        FlagDef(f.name, f.doc, f.part, adds=tuple(a for a in f.adds if a != "BotRestart"), changes=f.changes)
        if f.name == "bot_replies"
        else f
        for f in KVHEAL.flags
    ]
    return KVHEAL.derive("no_restart", drop=["BotRestart"], flags=flags)


def test_the_restart_is_what_loses_the_reply():
    """Without BotRestart the bot heals the reply its failed put left out: Converges holds."""
    for tabs, states in ((1, 268), (2, 15167)):
        cfg = Config.make(
            tabs=tabs, variants="atomic_cache,dedupe,put_fails,bot_replies", design=no_restart()
        )
        result = check(KVHealModel(cfg))
        assert result.states == states and result.ok


def test_a_stale_read_loses_the_reply_without_a_restart():
    """stale_reads: a heal of message 0 reads the cache before the reply's write (stale) and
    puts it back after; the bot's read, served the value before that put, holds the reply: it
    leaves the list, and nothing heals it. With the fix's atomic update the cache only grows,
    so a stale read never holds what the cache lacks: Converges holds."""
    model = KVHealModel(
        Config.make(
            tabs=1, variants="tab_view,stale_reads,dedupe,keep_verifying,bot_replies", design=no_restart()
        )
    )
    result = check(model)
    trace = result.properties["Converges"].trace
    assert (result.states, len(trace)) == (33693, 18)
    assert [s["action"] for s in trace[9:15]] == [
        "HealKey",
        "HealReadStale",
        "PostWrite",
        "PostAck",
        "HealWrite",
        "BotVerifyStale",
    ]
    from .conftest import assert_counterexample

    assert_counterexample(model, "Converges", trace)
    fixed = check(
        KVHealModel(
            Config.make(tabs=1, variants="as_built_fixed,stale_reads,bot_replies", design=no_restart())
        )
    )
    assert fixed.states == 17484
    assert {n for n, p in fixed.properties.items() if p.status == "violated"} == {"HealsTerminate"}


def test_everyone_sees_per_channel():
    """The reply is an AI message: with ai_channel the last tab's page is due it and the human
    tabs' are not; without it every page shows every channel."""
    model = KVHealModel(
        Config.make(tabs=2, variants="tab_view,full_poll,atomic_cache,dedupe,ai_channel,bot_replies")
    )
    prop = {p.name: p for p in model.properties()}["EveryoneSees"]
    steps = [("PostKey", {"m": 0}), ("PostCache", {"m": 0}), ("PostAck", {"m": 0})]
    steps += [("PostKey", {"m": 1}), ("PostCache", {"m": 1}), ("PostAck", {"m": 1})]
    steps += [("PostKey", {"m": 2}), ("PostCache", {"m": 2}), ("PostAck", {"m": 2})]
    steps += [("PollRead", {"t": 0}), ("PollDone", {"t": 0}), ("PollRead", {"t": 1}), ("PollDone", {"t": 1})]
    states = _steps(model, steps)
    views = [flatten(model.view(s)) for s in states]
    assert (views[-1]["shown[0]"], views[-1]["shown[1]"]) == ("[0,1]", "[1,2]")  # tab 1 posted 1
    assert prop.holds(states[-1]) and not prop.holds(states[-3])  # before the AI tab's poll


def test_the_compiled_and_the_python_engine_agree():
    for tabs, variants in ((1, "bot_replies"), (1, "atomic_cache,dedupe,put_fails,bot_replies")):
        cfg = Config.make(tabs=tabs, variants=variants)
        a, b = check(KVHealModel(cfg), engine="compiled"), check(KVHealModel(cfg), engine="python")
        assert (a.states, a.transitions) == (b.states, b.transitions) == PINNED[(tabs, variants)][:2]
        assert {n: (p.status, p.trace) for n, p in a.properties.items()} == {
            n: (p.status, p.trace) for n, p in b.properties.items()
        }


@pytest.mark.parametrize(
    "variants",
    [
        "bot_replies",
        "atomic_cache,dedupe,put_fails,bot_replies",
        # BotVerifyStale (3.5 s: the tab view's states)
        pytest.param("as_built_fixed,stale_reads,bot_replies", marks=pytest.mark.slow),
    ],
)
def test_z3_agrees_on_every_reachable_state(variants):
    from .test_agreement import Agreement

    rep = Agreement(Config.make(tabs=1, variants=variants)).run(direct_stride=20)
    assert (rep.states, rep.transitions) == PINNED[(1, variants)][:2]
    want = {"AckedIsStored": None, "CacheFromStore": None, "NoDuplicates": None}
    want |= {n: None for n in rep.shortest if n not in want}
    want |= {n: k for n, k in PINNED[(1, variants)][2].items() if n in want}
    assert rep.shortest == want


def test_bmc_and_the_lasso_search_find_the_checkers_lengths():
    from kvheal.model.prove import bmc, prove
    from kvheal.model.symbolic import SymbolicModel

    cfg = Config.make(tabs=1, variants="bot_replies")
    got = bmc(SymbolicModel(cfg), {"NoDuplicates": SymbolicModel(cfg).prop("NoDuplicates")}, 9)
    assert got["NoDuplicates"][0] == 9
    cfg = Config.make(tabs=1, variants="atomic_cache,dedupe,put_fails,bot_replies")
    res = prove(cfg, properties={"Converges"}, lasso_depth=11)
    pf = res.properties["Converges"]
    assert (str(pf.status), pf.method, len(pf.trace)) == ("violated", "lasso bmc", 11)
    assert "BotRestart" in [s["action"] for s in pf.trace]
    model = KVHealModel(cfg)
    from .conftest import assert_counterexample

    assert_counterexample(model, "Converges", pf.trace)


#: kvheal prove (lasso search off): the designs that hold are proved, with the reply healed
#: after the bot's BotVerify (heal-ranking) or by the sweeper; those that fail are not
PROVED = {
    (2, "atomic_cache,dedupe,bot_replies"): ("Converges", "PendingDrains"),
    (2, "atomic_cache,dedupe,put_fails,sweeper,bot_replies"): ("Converges", "PendingDrains"),  # slow
    (1, "as_built_fixed,sweeper,bot_replies"): ("Converges", "PendingDrains", "EveryoneSees"),
    (1, "as_built_fixed,bot_replies"): ("HealsTerminate",),
}


@pytest.mark.parametrize(
    "tabs,variants",
    [pytest.param(*k, marks=pytest.mark.slow) if "sweeper,bot" in k[1] and k[0] == 2 else k for k in PROVED],
    ids=lambda v: str(v),
)
def test_prove_decides_what_the_checker_does(tabs, variants):
    from kvheal.model.prove import prove

    res = prove(Config.make(tabs=tabs, variants=variants), lasso_depth=0)
    pinned = {**PINNED, **SLOW}
    violated = set(pinned[(tabs, variants)][2]) if (tabs, variants) in pinned else set()
    proved = {n for n, p in res.properties.items() if str(p.status) == "holds"}
    assert proved & violated == set()
    goals = {"Converges", "PendingDrains", "EveryoneSees", "HealsTerminate"} & set(res.properties)
    assert proved & goals == set(PROVED[(tabs, variants)])
    assert "VerifyIsAcked" in res.invariant  # the bot's list holds only acknowledged replies


@pytest.mark.slow  # a gcc -O2 of pan.c per configuration, some seconds each
@pytest.mark.usefixtures("spin")
@pytest.mark.parametrize(
    "tabs,variants", [(1, "bot_replies"), (2, "atomic_cache,dedupe,put_fails,bot_replies")]
)
def test_spin_stores_the_same_states(tabs, variants):
    from kvheal.model.promela import export, run_spin

    cfg = Config.make(tabs=tabs, variants=variants)
    r = run_spin(export(KVHEAL, cfg).text, timeout=300)
    states, transitions, violated = PINNED[(tabs, variants)]
    assert r.complete and (r.states, r.transitions) == (states, transitions)
    assert (r.errors > 0) == ("NoDuplicates" in violated)


def test_a_counterexample_draws_the_bot():
    model, result = checked(1, 1, None, "atomic_cache,dedupe,put_fails,bot_replies")
    trace = result.properties["Converges"].trace
    views = render.trace_views(model, trace)
    svg = render.sequence_svg(trace, views, title="Converges")
    assert ">bot<" in svg and "restarts: forgets" in svg and "verify += m1" in svg
    assert 'class="undrawn"' not in svg
    table = render.step_table_md(trace, views)
    assert "| `BotRestart()` | verify: [1] → [] |" in table
    model, result = checked(1, 1, None, "tab_view,stale_reads,dedupe,keep_verifying,bot_replies")
    trace = result.properties["Converges"].trace
    svg = render.sequence_svg(trace, render.trace_views(model, trace), title="Converges")
    assert "stale GET whole cache → " in svg and "m1 seen: verify {}" in svg
