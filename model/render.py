"""Counterexamples drawn for people: an SVG sequence diagram and a Markdown step table.

Pure: every function takes a trace (SPEC §9 steps) and the views of the states it visits
(``KVHealModel.view`` of each state of :func:`kvheal.model.trace.replay_trace`, one more view
than steps) and returns a string. Nothing here reads or writes files.

The diagram has a lane per tab, per worker request (the POST of ``m``, the heal of ``m``), for
the sweeper when the design has one, for the shared pending list with ``shared_pending``, and
per KV key (``comment:<id>``, ``recent:comments``). Time runs down, one row per step; each
message has its own colour, used for its arrows and wherever its id appears; a lasso's cycle is
bracketed "repeats for ever". The SVG is self-contained: inline attributes, generic font
families only.

With SPEC §6's tab view (``tab_view``: the views carry ``clock`` and ``shown``, and
``cursor`` unless ``full_poll``) a block of columns between the actions and the lanes says,
after every step, the clock and what each tab's page has shown (its cursor beside it); each
cell is a ``<text class="shown" data-step=".." data-tab="..">`` (``class="clock"`` for the
clock), so a program can read the diagram back. A ``Tick`` is a dashed rule across the lanes;
the step table gains the same columns.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from .trace import STUTTER, flatten, fmt_value, loop_start

#: One colour per message id (cycled): distinct hues, dark enough for text on white.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
NEUTRAL = "#444444"
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"

ROW = 38  # height of one step's row
LANE = 118  # width of one lane
LEFT = 210  # the step/action column
STATE_COL = 330  # the "after this step" column
HEAD = 64  # lane headers


def colour(m: int) -> str:
    """The colour of message ``m``."""
    return PALETTE[m % len(PALETTE)]


def trace_views(model: Any, trace: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The views of the states ``trace`` visits (replayed through ``model``; raises
    :class:`kvheal.model.trace.TraceError` if it does not replay)."""
    from .trace import replay_trace

    return [model.view(s) for s in replay_trace(model, trace)]


# -- lanes -------------------------------------------------------------------------------------


@dataclass
class Lane:
    """A vertical lifeline: its key, header text, group and colour of its header border."""

    key: str
    title: str
    sub: str
    group: str  # "tab" | "request" | "sweeper" | "store" | "kv"
    accent: str = NEUTRAL
    x: float = 0.0


GROUP_FILL = {
    "tab": "#e8f0fe",
    "request": "#fff6e0",
    "sweeper": "#fdeaea",
    "store": "#eef7ee",
    "kv": "#eaf6ea",
}


def _lanes(
    views: Sequence[Mapping[str, Any]], trace: Sequence[Mapping[str, Any]], left: float = LEFT
) -> list[Lane]:
    first = views[0]
    tabs = len(first["poll"])
    msgs = len(first["post"])
    shared = "lists" in first
    has_sweeper = any(s["action"].startswith("Sweep") for s in trace) or any(
        v["sweep"] != ("Idle",) for v in views
    )
    lanes = [Lane(f"tab{t}", f"tab {t}", "browser", "tab") for t in range(tabs)]
    if "verify" in first:  # bot_replies: the bot posts its reply and verifies it from memory
        lanes.append(Lane("bot", "bot", "replies to verify: memory", "sweeper", colour(msgs - 1)))
    if shared:
        lanes.append(Lane("pending", "pendingMessages", "localStorage (shared)", "store"))
    lanes += [Lane(f"post{m}", f"POST m{m}", "worker request", "request", colour(m)) for m in range(msgs)]
    for key in first["heal"]:
        if isinstance(key, tuple):
            t, m = key
            lanes.append(Lane(f"heal{t},{m}", f"heal m{m}", f"worker, from tab {t}", "request", colour(m)))
        else:
            lanes.append(Lane(f"heal{key}", f"heal m{key}", "worker request", "request", colour(key)))
    if has_sweeper:
        lanes.append(Lane("sweeper", "sweeper", "worker loop", "sweeper"))
    lanes += [Lane(f"key{m}", f"comment:{m}", "KV key", "kv", colour(m)) for m in range(msgs)]
    lanes.append(Lane("cache", "recent:comments", "KV key (the cache)", "kv"))
    for i, lane in enumerate(lanes):
        lane.x = left + LANE * i + LANE / 2
    return lanes


# -- text with coloured ids ----------------------------------------------------------------------


def _ids(values: Sequence[int], brackets: str = "[]") -> list[tuple[str, str | None]]:
    """Ids as text pieces, each id in its message's colour."""
    out: list[tuple[str, str | None]] = [(brackets[0], None)]
    for i, m in enumerate(values):
        if i:
            out.append((",", None))
        out.append((str(m), colour(int(str(m).rstrip("*")))))  # "0*": a copy with a final status
    out.append((brackets[1], None))
    return out


def _text(
    x: float,
    y: float,
    pieces: Sequence[tuple[str, str | None]] | str,
    *,
    anchor: str = "middle",
    size: int = 11,
    fill: str = "#111111",
    weight: str = "normal",
    italic: bool = False,
    attrs: str = "",
) -> str:
    if isinstance(pieces, str):
        pieces = [(pieces, None)]
    spans = "".join(
        escape(t) if c is None else f'<tspan fill="{c}" font-weight="bold">{escape(t)}</tspan>'
        for t, c in pieces
    )
    style = ' font-style="italic"' if italic else ""
    extra = f" {attrs}" if attrs else ""
    return (
        f'<text{extra} x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-family="{FONT}" '
        f'font-size="{size}" font-weight="{weight}" fill="{fill}"{style}>{spans}</text>'
    )


# -- what each step draws --------------------------------------------------------------------------


@dataclass
class Mark:
    """What one step draws: arrows ``(from lane, to lane, label pieces, dashed)`` and notes on a lane."""

    arrows: list[tuple[str, str, list[tuple[str, str | None]], bool]] = field(default_factory=list)
    notes: list[tuple[str, list[tuple[str, str | None]]]] = field(default_factory=list)
    crosses: list[str] = field(default_factory=list)
    colour: str = NEUTRAL
    #: a dashed rule across every lane with this label (time passing: ``Tick``)
    rule: list[tuple[str, str | None]] = field(default_factory=list)
    #: an action this renderer does not draw: only its name is written (class "undrawn")
    undrawn: bool = False


def _heal_lane(args: Mapping[str, Any]) -> str:
    return f"heal{args['t']},{args['m']}" if "t" in args else f"heal{args['m']}"


def _phase_ids(phase: Any, index: int = 1) -> tuple[int, ...]:
    return tuple(phase[index]) if isinstance(phase, tuple) and len(phase) > index else ()


def _reply(view: Mapping[str, Any]) -> int | None:
    """The bot's reply (``bot_replies``: the views carry ``verify``): the last message id."""
    return len(view["post"]) - 1 if "verify" in view else None


def _sender(view: Mapping[str, Any], m: int) -> str:
    """The lane that posts message m: its tab's, or the bot's for its reply."""
    return "bot" if m == _reply(view) else f"tab{m % len(view['poll'])}"


def _mark(
    step: Mapping[str, Any], before: Mapping[str, Any], after: Mapping[str, Any], dedupe: bool | None = None
) -> Mark:
    """The arrows and notes of one step, from the views around it (SPEC §4-5's actions)."""
    name, args = step["action"], dict(step.get("args", {}))
    m, t = args.get("m"), args.get("t")
    tabs = len(before["poll"])
    mk = Mark(colour=colour(m) if m is not None else NEUTRAL)
    cache_after = list(after["cache"])
    wrote = before["cache"] != after["cache"]
    if name == "PostKey" and m == _reply(before):
        mk.arrows.append(("bot", f"post{m}", [(f"POST reply m{m} (AI)", None)], True))
        mk.arrows.append((f"post{m}", f"key{m}", [(f"put comment:{m}", None)], False))
    elif name == "PostKey":
        mk.arrows.append((f"tab{m % tabs}", f"post{m}", [(f"POST m{m}", None)], True))
        mk.arrows.append((f"post{m}", f"key{m}", [(f"put comment:{m}", None)], False))
        if "shown" in after and m not in _shown_of(before, m % tabs):
            mk.notes.append((f"tab{m % tabs}", [("shows ", None), *_ids([m], "{}")]))
    elif name in ("PostRead", "HealRead", "PostReadStale", "HealReadStale"):
        lane = f"post{m}" if name.startswith("Post") else _heal_lane(args)
        side = after["post"][m] if name.startswith("Post") else after["heal"][_heal_key(args)]
        verb = "stale get → " if name.endswith("Stale") else "get → "
        mk.arrows.append(("cache", lane, [(verb, None), *_ids(_phase_ids(side))], False))
    elif name in ("PostWriteFail", "HealWriteFail", "PostCacheFail", "HealCacheFail"):
        lane = f"post{m}" if name.startswith("Post") else _heal_lane(args)
        verb = "CAS put" if "Cache" in name else "put"
        mk.arrows.append((lane, "cache", [(f"{verb} fails (1 write/s): cache unchanged", None)], True))
        mk.crosses.append("cache")
    elif name in ("PostWrite", "HealWrite", "PostCache", "HealCache"):
        lane = f"post{m}" if name.startswith("Post") else _heal_lane(args)
        verb = "CAS put " if name.endswith("Cache") else "put "
        skipped = (
            _skipped(before, name, args) if dedupe is None else dedupe and _holds_own(before, name, args)
        )
        if wrote or (name.endswith("Write") and not skipped):
            mk.arrows.append((lane, "cache", [(verb, None), *_ids(cache_after)], False))
        else:
            mk.notes.append((lane, [(f"m{m} already cached: no write", None)]))
    elif name == "PostAck" and m == _reply(before):
        mk.arrows.append((f"post{m}", "bot", [(f"200 OK; verify += m{m}", None)], True))
    elif name == "PostAck":
        owner = m % tabs
        got = _pending_of(after, owner) != _pending_of(before, owner) or "lists" in after
        label = "200 OK" + (f"; pending += m{m}" if got and "lists" not in after else "")
        mk.arrows.append((f"post{m}", f"tab{owner}", [(label, None)], True))
    elif name in ("PollRead", "PollReadStale"):
        verb = "stale GET → " if name.endswith("Stale") else "GET → "
        mk.arrows.append(("cache", f"tab{t}", [(verb, None), *_ids(_phase_ids(after["poll"][t]))], False))
    elif name == "PollDone" and "shown" in after:
        mk = _mark_view_poll(mk, t, before, after)
    elif name == "PollDone":
        seen = _phase_ids(before["poll"][t])
        pend_before = _pending_of(before, t)
        found = [i for i in pend_before if i in seen]
        healed = [k for k, p in after["heal"].items() if p != before["heal"][k] and p[0] == "Requested"]
        text: list[tuple[str, str | None]] = [("found ", None), *_ids(found, "{}")]
        if "lists" in after:
            text += [("; will write ", None), *_ids(_phase_ids(after["lists"][t]), "{}")]
        else:
            text += [("; pending ", None), *_ids(_pending_of(after, t), "{}")]
        mk.notes.append((f"tab{t}", text))
        for k in healed:
            hm = k[1] if isinstance(k, tuple) else k
            lane = f"heal{k[0]},{k[1]}" if isinstance(k, tuple) else f"heal{k}"
            mk.arrows.append((f"tab{t}", lane, [(f"heal m{hm}", colour(hm))], True))
    elif name == "HealKey":
        key = _heal_key(args)
        ok = after["heal"][key][0] != "Idle"
        mk.arrows.append(
            (f"key{m}", _heal_lane(args), [("get comment:" + str(m) + (" ✓" if ok else " 404"), None)], False)
        )
    elif name == "SweepList":
        k = _phase_ids(after["sweep"])
        src = "key0" if before["post"] else "cache"
        mk.arrows.append((src, "sweeper", [("list comment:* → ", None), *_ids(k, "{}")], False))
    elif name == "SweepRead":
        mk.arrows.append(
            ("cache", "sweeper", [("get → ", None), *_ids(_phase_ids(after["sweep"], 2))], False)
        )
    elif name in ("SweepWrite", "SweepCache"):
        if wrote or name == "SweepWrite" and _sweep_writes(before):
            verb = "CAS put " if name == "SweepCache" else "put "
            mk.arrows.append(("sweeper", "cache", [(verb, None), *_ids(cache_after)], False))
        else:
            mk.notes.append(("sweeper", [("nothing missing: no write", None)]))
    elif name == "Crash":
        mk.crosses.append(f"tab{t}")
        mk.notes.append((f"tab{t}", [("crashes", None)]))
    elif name == "Tick":
        mk.rule = [(f"time passes: clock {before['clock']} → {after['clock']}", None)]
    elif name == "Reload":
        text = [("reloads: shows ", None), *_ids(_shown_of(after, t), "{}")]
        if "cursor" in after:
            text.append((f"; cursor {after['cursor'][t]}", None))
        if "frozen" in after:
            text += [("; page-load list ", None), *_ids(after["frozen"][t], "{}")]
        mk.notes.append((f"tab{t}", text))
    elif name == "PendingWrite":
        mk.arrows.append((f"tab{t}", "pending", [("write ", None), *_ids(after["pending"], "{}")], False))
    elif name == "PostFail":
        mk.arrows.append(
            (f"post{m}", _sender(before, m), [("POST fails (key stored): not acked", None)], True)
        )
    elif name in ("BotVerify", "BotVerifyStale"):
        r = _reply(before)
        mk.colour = colour(r)
        stale = name.endswith("Stale")
        read = before["prev"] if stale else before["cache"]
        verb = "stale GET whole cache → " if stale else "GET whole cache → "
        mk.arrows.append(("cache", "bot", [(verb, None), *_ids(read)], False))
        if r in after["verify"]:
            mk.arrows.append(("bot", f"heal{r}", [(f"m{r} missing: heal m{r}", colour(r))], True))
        else:
            mk.notes.append(("bot", [(f"m{r} seen: verify ", None), *_ids(after["verify"], "{}")]))
    elif name == "BotRestart":
        mk.crosses.append("bot")
        mk.notes.append(("bot", [("restarts: forgets ", None), *_ids(before["verify"], "{}")]))
    elif name == STUTTER:
        mk.notes.append(("tab0", [("no action enabled: the state repeats", None)]))
    else:  # an action this renderer does not draw (a newer flag's): its name on its actor's lane
        lane = f"tab{t}" if t is not None else f"post{m}" if m is not None else "tab0"
        mk.notes.append((lane, [(f"{name}({', '.join(f'{k}={v}' for k, v in args.items())})", None)]))
        mk.undrawn = True
    return mk


def _healed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Any]:
    return [k for k, p in after["heal"].items() if p != before["heal"][k] and p[0] == "Requested"]


def _heal_arrows(mk: Mark, t: int, keys: Sequence[Any]) -> None:
    for k in keys:
        hm = k[1] if isinstance(k, tuple) else k
        lane = f"heal{k[0]},{k[1]}" if isinstance(k, tuple) else f"heal{k}"
        mk.arrows.append((f"tab{t}", lane, [(f"heal m{hm}", colour(hm))], True))


def _shown_of(view: Mapping[str, Any], t: int) -> tuple[int, ...]:
    shown = view.get("shown", ())
    return tuple(shown[t]) if t < len(shown) else ()


def response(before: Mapping[str, Any], t: int) -> tuple[int, ...]:
    """What tab t's poll returns with the tab view (SPEC §6): the ids of its snapshot stamped
    at or after its cursor (the whole snapshot without a cursor, ``full_poll``)."""
    snap = _phase_ids(before["poll"][t])
    if "cursor" not in before:
        return snap
    return tuple(i for i in snap if before["ts"][i] >= before["cursor"][t])


def _mark_view_poll(mk: Mark, t: int, before: Mapping[str, Any], after: Mapping[str, Any]) -> Mark:
    """``PollDone(t)`` with the tab view: what the response held, what the page newly shows,
    where the cursor went, which pending ids counted as found."""
    resp = response(before, t)
    new = [i for i in _shown_of(after, t) if i not in _shown_of(before, t)]
    pend_before = _pending_of(before, t)
    if "lists" in after:
        left = set(_phase_ids(after["lists"][t]))
        found = [i for i in pend_before if i not in left]
    else:
        found = [i for i in pend_before if i not in _pending_of(after, t)]
    text: list[tuple[str, str | None]] = [("response ", None), *_ids(resp)]
    if new:
        text += [("; shows +", None), *_ids(new, "{}")]
    if "cursor" in after and after["cursor"][t] != before["cursor"][t]:
        text.append((f"; cursor → {after['cursor'][t]}", None))
    text += [("; found ", None), *_ids(found, "{}")]
    mk.notes.append((f"tab{t}", text))
    _heal_arrows(mk, t, _healed(before, after))
    return mk


#: The actions :func:`sequence_svg` draws as what they do (arrows, notes); any other is written
#: by name on its actor's lane (``class="undrawn"``).
DRAWN = frozenset(
    {
        "PostKey", "PostRead", "PostReadStale", "PostWrite", "PostCache", "PostAck", "PostFail",
        "PostWriteFail", "PostCacheFail", "PollRead", "PollReadStale", "PollDone", "HealKey",
        "HealRead", "HealReadStale", "HealWrite", "HealCache", "HealWriteFail", "HealCacheFail",
        "SweepList", "SweepRead", "SweepWrite", "SweepCache", "Crash", "PendingWrite", "Tick",
        "Reload", "BotVerify", "BotVerifyStale", "BotRestart", STUTTER,
    }
)  # fmt: skip


def _heal_key(args: Mapping[str, Any]) -> Any:
    return (args["t"], args["m"]) if "t" in args else args["m"]


def _pending_of(view: Mapping[str, Any], t: int) -> tuple[int, ...]:
    pending = view["pending"]
    if "lists" in view:
        return tuple(pending)
    return tuple(pending[t]) if t < len(pending) else ()


def _holds_own(before: Mapping[str, Any], name: str, args: Mapping[str, Any]) -> bool:
    """Whether the snapshot a ``PostWrite``/``HealWrite`` writes from already holds its id."""
    phase = before["post"][args["m"]] if name.startswith("Post") else before["heal"][_heal_key(args)]
    return args["m"] in _phase_ids(phase)


def _skipped(before: Mapping[str, Any], name: str, args: Mapping[str, Any]) -> bool:
    """A dedupe writer whose snapshot holds its id writes nothing; we cannot see the flag, so a
    write that changes nothing and whose snapshot holds ``m`` is drawn as skipped."""
    return _holds_own(before, name, args)


def _sweep_writes(before: Mapping[str, Any]) -> bool:
    phase = before["sweep"]
    if len(phase) < 3:
        return False
    return any(i not in phase[2] for i in phase[1])


# -- the diagram -------------------------------------------------------------------------------------


def _state_line(view: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = [("cache ", None), *_ids(view["cache"])]
    if "lists" in view:
        out += [("  pending ", None), *_ids(view["pending"], "{}")]
    else:
        for t, p in enumerate(view["pending"]):
            out += [(f"  pending t{t} ", None), *_ids(p, "{}")]
    if "verify" in view:
        out += [("  bot verifies ", None), *_ids(view["verify"], "{}")]
    return out


CLOCK_W = 46  # the clock column (tab view)


def _shown_w(views: Sequence[Mapping[str, Any]]) -> int:
    """The width of one tab's "shows" column: room for every message id and the cursor."""
    return max(84, 16 * len(views[0]["post"]) + 56)


def view_cell(view: Mapping[str, Any], t: int) -> str:
    """What tab t shows in a state, as text: ``{0,1}``, with ``≥c`` for its cursor when it
    has one (a poll returns the messages stamped at or after it)."""
    text = "{" + ",".join(str(i) for i in _shown_of(view, t)) + "}"
    if "cursor" in view:
        text += f" ≥{view['cursor'][t]}"
    return text


def never_shown(
    trace: Sequence[Mapping[str, Any]],
    views: Sequence[Mapping[str, Any]],
    channels: Sequence[Collection[int]] | None = None,
) -> dict[int, list[int]]:
    """For a lasso over the tab view: per live tab, the acknowledged messages of its channel
    (``channels[t]``; every message when None) it shows in no state of the loop (what
    ``EveryoneSees`` waits for in vain); empty otherwise."""
    loop = loop_start(list(trace))
    if loop is None or "shown" not in views[0]:
        return {}
    cycle = views[loop + 1 :] or views[-1:]
    out = {}
    for t in range(len(views[0]["poll"])):
        if not all(v["alive"][t] for v in cycle):
            continue
        acked = set.intersection(*({m for m, p in enumerate(v["post"]) if p[0] == "Acked"} for v in cycle))
        if channels is not None:
            acked &= set(channels[t])
        missing = sorted(m for m in acked if all(m not in _shown_of(v, t) for v in cycle))
        if missing:
            out[t] = missing
    return out


def sequence_svg(
    trace: Sequence[Mapping[str, Any]],
    views: Sequence[Mapping[str, Any]],
    title: str = "",
    violated: str = "",
    ident: str = "",
    dedupe: bool | None = None,
    channels: Sequence[Collection[int]] | None = None,
) -> str:
    """A counterexample as an SVG sequence diagram (see the module's docstring).

    ``dedupe`` says whether the design has the flag: a write from a snapshot that already
    holds its id is then drawn as skipped, otherwise as a put (of an unchanged value, when
    trimming drops the duplicate). None guesses it from the views: a write that changes
    nothing and whose snapshot holds its id is drawn as skipped.

    ``views`` has one more element than ``trace``; ``title`` heads the picture and
    ``violated`` (a property name) is written under the last row; ``ident`` prefixes the
    SVG's internal ids, so several diagrams can share one HTML page.
    """
    pre = "".join(c if c.isalnum() else "-" for c in ident) + "-ah" if ident else "ah"
    if len(views) != len(trace) + 1:
        raise ValueError(f"{len(trace)} steps need {len(trace) + 1} views, got {len(views)}")
    tab_view = "shown" in views[0]
    tabs = len(views[0]["poll"])
    shown_w = _shown_w(views)
    view_w = CLOCK_W + shown_w * tabs + 10 if tab_view else 0
    lanes = _lanes(views, trace, LEFT + view_w)
    at = {lane.key: lane for lane in lanes}
    loop = loop_start(list(trace))
    right = LEFT + view_w + LANE * len(lanes)  # where the lanes end
    width = right + STATE_COL + 40
    top = 34 + HEAD
    height = top + ROW * (len(trace) + 1) + (58 if tab_view else 40)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f"<title>{escape(title or 'counterexample')}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        "<defs>"
        + "".join(
            f'<marker id="{pre}{i}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
            for i, c in enumerate((*PALETTE, NEUTRAL))
        )
        + "</defs>",
    ]
    if title:
        out.append(_text(10, 22, title, anchor="start", size=15, weight="bold"))
    # headers and lifelines
    dead: dict[str, int] = {}
    for i, step in enumerate(trace):
        if step["action"] == "Crash":
            dead.setdefault(f"tab{step['args']['t']}", i)
    for lane in lanes:
        fill = GROUP_FILL[lane.group]
        out.append(
            f'<rect x="{lane.x - LANE / 2 + 4:.1f}" y="34" width="{LANE - 8}" height="{HEAD - 10}" '
            f'rx="6" fill="{fill}" stroke="{lane.accent}" stroke-width="1.5"/>'
        )
        out.append(
            _text(
                lane.x,
                52,
                lane.title,
                size=11,
                weight="bold",
                fill=lane.accent if lane.accent != NEUTRAL else "#111111",
            )
        )
        out.append(_text(lane.x, 68, lane.sub, size=9, fill="#555555"))
        end = top + ROW * (dead[lane.key] + 1) if lane.key in dead else height - 40
        out.append(
            f'<line x1="{lane.x:.1f}" y1="{34 + HEAD - 10}" x2="{lane.x:.1f}" y2="{end}" '
            f'stroke="#bbbbbb" stroke-width="1" stroke-dasharray="{"2,3" if lane.group == "request" else "none"}"/>'
        )
    out.append(_text(8, top - 8, "step  action", anchor="start", size=10, fill="#555555"))
    out.append(_text(right + 10, top - 8, "after this step", anchor="start", size=10, fill="#555555"))
    if tab_view:
        out.append(
            f'<rect x="{LEFT}" y="34" width="{view_w - 10}" height="{HEAD - 10}" rx="6" '
            f'fill="{GROUP_FILL["tab"]}" stroke="{NEUTRAL}" stroke-width="1"/>'
        )
        what = "{shown} ≥cursor" if "cursor" in views[0] else "{shown}"
        out.append(_text(LEFT + (view_w - 10) / 2, 50, f"shown by each tab: {what}", size=10, weight="bold"))
        out.append(_text(LEFT + CLOCK_W / 2, 72, "clock", size=10, fill="#555555"))
        for t in range(tabs):
            cx = LEFT + CLOCK_W + shown_w * t + shown_w / 2
            out.append(_text(cx, 72, f"tab {t}", size=10, weight="bold", fill="#1a4d8f"))
    if loop is not None:
        y0 = top + ROW * loop + 2
        y1 = top + ROW * len(trace) - 2
        out.append(
            f'<rect x="2" y="{y0}" width="{width - 4}" height="{y1 - y0}" fill="#fff3c4" '
            f'fill-opacity="0.45" stroke="none"/>'
        )
        bx = width - 18
        out.append(
            f'<path d="M{bx - 8},{y0} L{bx},{y0} L{bx},{y1} L{bx - 8},{y1}" fill="none" '
            f'stroke="#b8860b" stroke-width="2"/>'
        )
        out.append(
            f'<text x="{bx + 12}" y="{(y0 + y1) / 2:.1f}" text-anchor="middle" font-family="{FONT}" '
            f'font-size="11" font-weight="bold" fill="#8a6d00" '
            f'transform="rotate(90 {bx + 12} {(y0 + y1) / 2:.1f})">↻ repeats for ever</text>'
        )
    for i, step in enumerate(trace):
        y = top + ROW * i + ROW / 2
        if i % 2:
            out.append(f'<rect x="0" y="{top + ROW * i}" width="{LEFT - 6}" height="{ROW}" fill="#f6f6f6"/>')
        args = ", ".join(f"{k}={v}" for k, v in step.get("args", {}).items())
        mk = _mark(step, views[i], views[i + 1], dedupe)
        out.append(_text(8, y + 4, f"{i + 1:>2}", anchor="start", size=11, fill="#555555"))
        out.append(
            _text(
                30, y + 4, f"{step['action']}({args})", anchor="start", size=11, fill=mk.colour, weight="bold"
            )
        )
        if tab_view:
            out += _view_cells(i, views, y, shown_w)
        if mk.rule:
            ry = top + ROW * i + 4
            out.append(
                f'<line x1="{LEFT + view_w}" y1="{ry}" x2="{right}" y2="{ry}" stroke="#8a6d00" '
                f'stroke-width="1.5" stroke-dasharray="8,4"/>'
            )
            out.append(_text(LEFT + view_w + 8, y + 6, mk.rule, anchor="start", size=10, fill="#8a6d00"))
        for src, dst, label, dashed in mk.arrows:
            if src not in at or dst not in at:
                continue
            x1, x2 = at[src].x, at[dst].x
            c = mk.colour
            if c == NEUTRAL and len(label) == 1 and label[0][1] is not None:
                c = label[0][1]  # a heal request sent by a poll: the healed message's colour
            mid = PALETTE.index(c) if c in PALETTE else len(PALETTE)
            shrink = 5 if x2 > x1 else -5
            out.append(
                f'<line x1="{x1 + shrink:.1f}" y1="{y + 6:.1f}" x2="{x2 - shrink:.1f}" y2="{y + 6:.1f}" '
                f'stroke="{c}" stroke-width="2" marker-end="url(#{pre}{mid})"'
                + (' stroke-dasharray="6,4"' if dashed else "")
                + "/>"
            )
            out.append(_text((x1 + x2) / 2, y, label, size=10, fill=c))
        for key, label in mk.notes:
            if key not in at:
                continue
            x = at[key].x
            out.append(f'<circle cx="{x:.1f}" cy="{y + 6:.1f}" r="4" fill="{mk.colour}"/>')
            ny = y + 19 if mk.arrows else y + 4  # under the arrow when the step also sends one
            out.append(
                _text(
                    x + 8,
                    ny,
                    label,
                    anchor="start",
                    size=10,
                    fill="#222222",
                    italic=True,
                    attrs='class="undrawn"' if mk.undrawn else "",
                )
            )
        for key in mk.crosses:
            x = at[key].x
            out.append(
                f'<path d="M{x - 7},{y - 1} L{x + 7},{y + 13} M{x + 7},{y - 1} L{x - 7},{y + 13}" '
                f'stroke="#cc0000" stroke-width="3"/>'
            )
        out.append(
            _text(
                right + 10,
                y + 4,
                _state_line(views[i + 1]),
                anchor="start",
                size=10,
                fill="#333333",
            )
        )
    foot = top + ROW * len(trace) + 24
    if violated:
        what = (
            "the goal is false on every pass of the loop"
            if loop is not None
            else "violated in the last state"
        )
        out.append(
            _text(8, foot, f"✗ {violated}: {what}", anchor="start", size=12, weight="bold", fill="#b00020")
        )
        unseen = never_shown(trace, views, channels) if violated == "EveryoneSees" else {}
        if unseen:
            cycle = views[loop + 1 :] if loop is not None else views[-1:]
            said = "; ".join(
                f"tab {t} never shows "
                + ", ".join(
                    f"m{m}" + (" (in the cache throughout)" if all(m in v["cache"] for v in cycle) else "")
                    for m in ms
                )
                for t, ms in unseen.items()
            )
            out.append(_text(8, foot + 18, said, anchor="start", size=11, fill="#b00020"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _view_cells(i: int, views: Sequence[Mapping[str, Any]], y: float, shown_w: int) -> list[str]:
    """Row ``i``'s clock and shown cells (the state after step ``i + 1``); a cell whose value
    the step changed is tinted: green when the page shows more, red when it shows less (a
    reload), yellow for the clock or a cursor that moved."""
    before, after = views[i], views[i + 1]
    out = []
    ytop = y - ROW / 2 + 3
    if after["clock"] != before["clock"]:
        out.append(
            f'<rect x="{LEFT + 4}" y="{ytop}" width="{CLOCK_W - 8}" height="{ROW - 6}" fill="#fff0b3"/>'
        )
    out.append(
        _text(
            LEFT + CLOCK_W / 2,
            y + 4,
            str(after["clock"]),
            size=11,
            weight="bold" if after["clock"] != before["clock"] else "normal",
            attrs=f'class="clock" data-step="{i + 1}"',
        )
    )
    for t in range(len(after["poll"])):
        x0 = LEFT + CLOCK_W + shown_w * t
        old, new = set(_shown_of(before, t)), set(_shown_of(after, t))
        moved = "cursor" in after and after["cursor"][t] != before["cursor"][t]
        tint = "#fbe0e0" if old - new else "#dff3e0" if new - old else "#fff0b3" if moved else ""
        if tint:
            out.append(
                f'<rect x="{x0 + 4}" y="{ytop}" width="{shown_w - 8}" height="{ROW - 6}" rx="3" fill="{tint}"/>'
            )
        pieces = _ids(_shown_of(after, t), "{}")
        if "cursor" in after:
            pieces.append((f" ≥{after['cursor'][t]}", None))
        out.append(
            _text(
                x0 + shown_w / 2,
                y + 4,
                pieces,
                size=11,
                attrs=f'class="shown" data-step="{i + 1}" data-tab="{t}"',
            )
        )
    return out


# -- the step table -----------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def step_rows(
    trace: Sequence[Mapping[str, Any]], views: Sequence[Mapping[str, Any]]
) -> list[tuple[int, str, str]]:
    """Per step: its number, ``Action(args)`` (``↻`` at the start of a lasso's loop) and what it
    changed (``field: old → new``, as :func:`kvheal.model.trace.changes` says it)."""
    if len(views) != len(trace) + 1:
        raise ValueError(f"{len(trace)} steps need {len(trace) + 1} views, got {len(views)}")
    loop = loop_start(list(trace))
    rows = []
    for i, step in enumerate(trace):
        a, b = flatten(dict(views[i])), flatten(dict(views[i + 1]))
        what = (
            "; ".join(f"{k}: {a[k]} → {b[k]}" for k in a if a[k] != b.get(k))
            or "(nothing: stutters for ever)"
        )
        args = ", ".join(f"{k}={v}" for k, v in step.get("args", {}).items())
        marker = "↻ " if loop is not None and i == loop else ""
        rows.append((i + 1, f"{marker}{step['action']}({args})", what))
    return rows


def step_table_md(trace: Sequence[Mapping[str, Any]], views: Sequence[Mapping[str, Any]]) -> str:
    """The step table in Markdown: step, action, what changed; a lasso's loop noted under it."""
    head, rule = "| step | action | what changed |", "|---:|---|---|"
    tab_view = "shown" in views[0]
    tabs = range(len(views[0]["poll"]))
    if tab_view:  # SPEC §6: the clock and what each tab has shown after the step
        cursor = " (cursor)" if "cursor" in views[0] else ""
        head += " clock | " + " | ".join(f"tab {t} shows{cursor}" for t in tabs) + " |"
        rule += "---:|" + "---|" * len(tabs)
    lines = [head, rule]
    for n, action, what in step_rows(trace, views):
        row = f"| {n} | `{action}` | {_md_cell(what)} |"
        if tab_view:
            view = views[n]
            row += f" {view['clock']} | " + " | ".join(view_cell(view, t) for t in tabs) + " |"
        lines.append(row)
    loop = loop_start(list(trace))
    if loop is not None:
        lines.append("")
        lines.append(f"Steps {loop + 1}-{len(trace)} (↻) repeat for ever; the goal is false on every pass.")
    else:
        last = views[-1]
        lines.append("")
        lines.append(f"Violated in the last state: cache {fmt_value(tuple(last['cache']))}.")
    return "\n".join(lines) + "\n"


# -- one state in a few lines (state graphs) -----------------------------------------------------------


def state_label(view: Mapping[str, Any]) -> str:
    """A state's view in a few lines for a graph node: ``cache``, then per tab/message the
    fields that are not at their resting value (heals idle, tabs alive, sweeper idle omitted)."""
    flat = flatten(dict(view))
    lines = [f"cache {flat['cache']}  stored {flat['stored']}"]
    groups: dict[str, list[str]] = {}
    for key, value in flat.items():
        name = key.split("[", 1)[0]
        if name in ("cache", "stored"):
            continue
        if (name, value) in (("heal", "Idle"), ("alive", "true"), ("sweep", "Idle"), ("lists", "Idle")):
            continue
        groups.setdefault(name, []).append(value if "[" not in key else f"{key[len(name) + 1 : -1]}:{value}")
    for name, values in groups.items():
        lines.append(f"{name} " + " ".join(values))
    return "\n".join(lines)


def state_table_md(trace: Sequence[Mapping[str, Any]], views: Sequence[Mapping[str, Any]]) -> str:
    """The full state at each step, in Markdown: a row per state (0 is the initial state), a
    column per field of the view (``cache``, ``post[0]``, ``pending[1]``, ...)."""
    if len(views) != len(trace) + 1:
        raise ValueError(f"{len(trace)} steps need {len(trace) + 1} views, got {len(views)}")
    flat = [flatten(dict(v)) for v in views]
    fields = list(flat[0])
    lines = ["| state | after | " + " | ".join(fields) + " |", "|---:|---|" + "---|" * len(fields)]
    for i, row in enumerate(flat):
        after = "(initial)" if i == 0 else f"{i}. {trace[i - 1]['action']}"
        lines.append(f"| {i} | {after} | " + " | ".join(_md_cell(row.get(f, "")) for f in fields) + " |")
    return "\n".join(lines) + "\n"


# -- a line chart ----------------------------------------------------------------------------------------


def line_chart_svg(
    title: str,
    x_label: str,
    y_label: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    width: int = 560,
    height: int = 320,
    y_max: float | None = None,
    colours: Mapping[str, str] | None = None,
    dashed: Sequence[str] = (),
) -> str:
    """A small self-contained SVG line chart: one coloured line with dots per series, axes with
    ticks at the x values and five y ticks from 0, a legend. ``colours`` gives a series its
    colour (default: the palette in order), series named in ``dashed`` are drawn dashed.
    Pure: points in, text out."""
    longest = max((len(name) for name in series), default=0)
    left, right, top, bottom = 62, max(160, round(6.4 * longest) + 50), 34, 48
    pw, ph = width - left - right, height - top - bottom
    xs = sorted({x for pts in series.values() for x, _ in pts}) or [0.0]
    ys = [y for pts in series.values() for _, y in pts]
    ymax = y_max if y_max is not None else (max(ys) if ys else 1.0)
    ymax = ymax if ymax > 0 else 1.0
    x0, x1 = min(xs), max(xs)

    def px(x: float) -> float:
        return left + (pw * (x - x0) / (x1 - x0) if x1 > x0 else pw / 2)

    def py(y: float) -> float:
        return top + ph - ph * y / ymax

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        _text(left, 20, title, anchor="start", size=13, weight="bold"),
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>',
    ]
    for x in xs:
        out.append(
            f'<line x1="{px(x):.1f}" y1="{top + ph}" x2="{px(x):.1f}" y2="{top + ph + 5}" stroke="#333"/>'
        )
        out.append(_text(px(x), top + ph + 18, f"{x:g}", size=10))
    for i in range(6):
        y = ymax * i / 5
        out.append(
            f'<line x1="{left - 5}" y1="{py(y):.1f}" x2="{left + pw}" y2="{py(y):.1f}" stroke="#e5e5e5"/>'
        )
        out.append(_text(left - 8, py(y) + 4, f"{y:.3g}", anchor="end", size=10))
    out.append(_text(left + pw / 2, height - 10, x_label, size=11))
    out.append(
        f'<text x="14" y="{top + ph / 2:.1f}" text-anchor="middle" font-family="{FONT}" font-size="11" '
        f'transform="rotate(-90 14 {top + ph / 2:.1f})">{escape(y_label)}</text>'
    )
    for i, (name, pts) in enumerate(series.items()):
        c = (colours or {}).get(name) or PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="6,4"' if name in dashed else ""
        pts = sorted(pts)
        if len(pts) > 1:
            path = " ".join(
                f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for j, (x, y) in enumerate(pts)
            )
            out.append(f'<path d="{path}" fill="none" stroke="{c}" stroke-width="2.5"{dash}/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{c}"/>')
        ly = top + 8 + 18 * i
        out.append(
            f'<line x1="{left + pw + 14}" y1="{ly}" x2="{left + pw + 34}" y2="{ly}" stroke="{c}" '
            f'stroke-width="3"{dash}/>'
        )
        out.append(_text(left + pw + 40, ly + 4, name, anchor="start", size=10))
    out.append("</svg>")
    return "\n".join(out) + "\n"
