"""`kvheal graph`: the state graph through networkx, DOT and GraphML, the path highlighted."""

from __future__ import annotations

import networkx as nx

from kvheal.graph_cmd import highlight, state_graph, to_dot, to_graphml
from kvheal.model.trace import replay_trace

from .conftest import checked
from .conftest import kvheal_here as kvheal


def test_graph_is_the_state_space():
    model, result = checked("", tabs=1, per_tab=2)
    g, index = state_graph(model, 10_000)
    assert g.number_of_nodes() == result.states
    assert g.number_of_edges() == result.transitions
    assert g.nodes[0]["initial"] and g.nodes[0]["label"].startswith("cache []")


def test_counterexample_highlighted_and_graphml_reads_back(tmp_path):
    model, result = checked("", tabs=1, per_tab=2)
    g, index = state_graph(model, 10_000)
    trace = result.properties["Converges"].trace
    highlight(g, model, index, trace)
    states = replay_trace(model, trace)
    on_nodes = {n for n, d in g.nodes(data=True) if d["on_path"]}
    assert on_nodes == {index[s] for s in states}
    steps = sorted(d["step"] for _, _, d in g.edges(data=True) if d["on_path"])
    assert steps == list(range(1, len(trace) + 1))  # every step once (a loop edge may repeat a pair)
    loops = sum(d["loop"] for _, _, d in g.edges(data=True))
    assert loops == sum(bool(s.get("loop")) for s in trace)
    assert any("Converges" in d["failing"] for n, d in g.nodes(data=True) if d["on_path"])
    path = tmp_path / "g.graphml"
    path.write_text(to_graphml(g))
    back = nx.read_graphml(path)
    assert back.number_of_nodes() == g.number_of_nodes() and back.number_of_edges() == g.number_of_edges()
    assert sum(1 for _, d in back.nodes(data=True) if d["on_path"]) == len(on_nodes)
    dot = to_dot(g)
    assert dot.startswith('digraph "kvheal" {') and dot.rstrip().endswith("}")
    assert dot.count('penwidth="3", fontcolor="#d62728"') == len(trace)
    assert dot.count(" -> ") == g.number_of_edges()


def test_graph_command(tmp_path):
    out = tmp_path / "g.graphml"
    proc = kvheal("graph", "--tabs", "1", "--per-tab", "2", "--property", "NoDuplicates", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    g = nx.read_graphml(out)
    assert g.graph["counterexample"] == "NoDuplicates"
    assert sum(1 for _, d in g.nodes(data=True) if d["on_path"]) == 10  # 9 steps, 10 states
    proc = kvheal("graph", "--tabs", "1", "--variant", "atomic_cache,dedupe")
    assert proc.returncode == 0 and proc.stdout.startswith("digraph") and "#d62728" not in proc.stdout
    proc = kvheal("graph", "--tabs", "2", "--max-states", "100")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "more than 100 states" in proc.stderr
    proc = kvheal("graph", "--tabs", "1", "--property", "Nope")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
