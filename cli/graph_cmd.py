"""`kvheal graph`: a small configuration's whole state graph as DOT or GraphML, built with
networkx, with a property's counterexample highlighted and each state labelled by its view."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import click
import networkx as nx

from kvheal.model import KVHealModel
from kvheal.model import check as run_check
from kvheal.model.render import state_label
from kvheal.model.trace import replay_trace

from .options import config_options, make_config


class TooBig(Exception):
    """The state graph has more states than allowed."""


def state_graph(model: Any, max_states: int) -> tuple[nx.MultiDiGraph, dict[Any, int]]:
    """Every reachable state (numbered in BFS order, labelled by its view) and every transition
    (one edge per action instance, attribute ``action``); :class:`TooBig` past ``max_states``."""
    g = nx.MultiDiGraph()
    props = model.properties()
    index: dict[Any, int] = {}
    queue = list(model.init_states())
    for s in queue:
        index[s] = len(index)
    head = 0
    while head < len(queue):
        s = queue[head]
        num = index[s]
        failing = [p.name for p in props if not p.holds(s)]
        g.add_node(
            num,
            label=state_label(model.view(s)),
            initial=num == 0,
            failing=",".join(failing),
            on_path=False,
            path_index=-1,
        )
        for lab, t in model.successors(s):
            if t not in index:
                if len(index) >= max_states:
                    raise TooBig(max_states)
                index[t] = len(index)
                queue.append(t)
            g.add_edge(
                num, index[t], key=lab, action=str(model.instances[lab]), on_path=False, loop=False, step=-1
            )
        head += 1
    return g, index


def highlight(
    g: nx.MultiDiGraph, model: Any, index: Mapping[Any, int], trace: Sequence[Mapping[str, Any]]
) -> None:
    """Mark a counterexample's states and transitions (``on_path``, ``path_index``, ``step``,
    ``loop`` on the lasso's cycle)."""
    states = replay_trace(model, trace)
    for i, s in enumerate(states):
        node = g.nodes[index[s]]
        node["on_path"] = True
        if node["path_index"] < 0:
            node["path_index"] = i
    for i, step in enumerate(trace):
        if step["action"] == "Stutter":
            continue
        a, b = index[states[i]], index[states[i + 1]]
        lab = model.action(step["action"], dict(step.get("args", {}))).label
        edge = g.edges[a, b, lab]
        edge["on_path"] = True
        edge["step"] = i + 1
        edge["loop"] = bool(step.get("loop"))


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(g: nx.MultiDiGraph, name: str = "kvheal") -> str:
    """The graph in Graphviz's DOT: the counterexample's states and steps in red (its loop
    dashed), the initial state bold, states where a property is false filled."""
    out = [
        f"digraph {_q(name)} {{",
        '  graph [rankdir=TB, fontname="Helvetica"];',
        '  node [shape=box, fontname="Helvetica", fontsize=9, style="rounded,filled", fillcolor="#ffffff"];',
        '  edge [fontname="Helvetica", fontsize=8, color="#888888"];',
    ]
    for n, d in g.nodes(data=True):
        attrs = {"label": f"#{n}\n{d['label']}" + (f"\nfalse: {d['failing']}" if d["failing"] else "")}
        if d["failing"]:
            attrs["fillcolor"] = "#fff0f0"
        if d["initial"]:
            attrs["penwidth"] = "2.5"
        if d["on_path"]:
            attrs.update(color="#d62728", penwidth="3", fillcolor="#ffe0e0")
        out.append(f"  {n} [" + ", ".join(f"{k}={_q(v)}" for k, v in attrs.items()) + "];")
    for a, b, d in g.edges(data=True):
        attrs = {"label": d["action"]}
        if d["on_path"]:
            attrs.update(
                label=f"{d['step']}: {d['action']}", color="#d62728", penwidth="3", fontcolor="#d62728"
            )
            if d["loop"]:
                attrs["style"] = "dashed"
        out.append(f"  {a} -> {b} [" + ", ".join(f"{k}={_q(v)}" for k, v in attrs.items()) + "];")
    out.append("}")
    return "\n".join(out) + "\n"


def to_graphml(g: nx.MultiDiGraph) -> str:
    """The graph in GraphML (networkx's writer), attributes typed as GraphML keys."""
    buf = io.BytesIO()
    nx.write_graphml(g, buf)
    return buf.getvalue().decode("utf-8")


@click.command()
@config_options
@click.option(
    "--max-states",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Refuse graphs with more states than this (a picture of more is unreadable).",
)
@click.option(
    "--property",
    "prop",
    default=None,
    metavar="NAME",
    help="Highlight this property's counterexample (default: the first violated one).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "graphml"]),
    default=None,
    help="Output format (default: from --out's extension, else dot).",
)
@click.option("--out", "out", default="-", metavar="FILE", help="Where to write (default stdout).")
def graph(
    tabs: int,
    per_tab: int,
    cap: int | None,
    variant: str,
    max_states: int,
    prop: str | None,
    fmt: str | None,
    out: str,
) -> int:
    """Write the state graph of a small configuration (DOT or GraphML), the chosen property's
    counterexample highlighted; try `kvheal graph --tabs 1 --variant atomic_cache,dedupe`."""
    cfg = make_config(tabs, per_tab, cap, variant)
    model = KVHealModel(cfg)
    names = [p.name for p in model.properties()]
    if prop is not None and prop not in names:
        raise click.UsageError(f"property {prop!r} does not apply here; choose from {', '.join(names)}")
    try:
        g, index = state_graph(model, max_states)
    except TooBig:
        raise click.UsageError(
            f"more than {max_states:,} states: raise --max-states or choose a smaller configuration"
        ) from None
    result = run_check(model, only={prop} if prop else None)
    chosen = prop or next((n for n, p in result.properties.items() if p.status == "violated"), None)
    if chosen is not None and result.properties[chosen].status == "violated":
        highlight(g, model, index, result.properties[chosen].trace)
        g.graph["counterexample"] = chosen
    g.graph["config"] = f"tabs={cfg.tabs} per_tab={cfg.per_tab} cap={cfg.cap} variant={cfg.variant_label()}"
    if fmt is None:
        fmt = "graphml" if out.endswith(".graphml") else "dot"
    text = to_graphml(g) if fmt == "graphml" else to_dot(g, g.graph["config"])
    if out == "-":
        click.echo(text, nl=False)
    else:
        try:
            with open(out, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise click.UsageError(f"cannot write {out}: {e.strerror}") from None
    return 0
