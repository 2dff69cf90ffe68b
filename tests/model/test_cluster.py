"""`check --cluster`: the search partitioned over Ray workers (model/cluster.py) on a local
cluster of 2 workers, one for the whole module (Ray takes seconds to start). Counts, depths,
verdicts and trace lengths are those of the single-process check; with a graph, the JSON is
identical. Skipped without the cluster extra (pip install 'kvheal[cluster]')."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from kvheal.model import Config, KVHealModel, check
from kvheal.model.results import exit_status

from .conftest import assert_counterexample

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.cluster

from kvheal.model import cluster  # noqa: E402


@pytest.fixture(scope="module")
def cl():
    c = cluster.Cluster("local:2")
    yield c
    c.close()


def plain(result) -> dict:
    out = result.as_json()
    out.pop("seconds"), out.pop("engine")
    return out


def lengths(result) -> dict:
    return {n: (str(p.status), len(p.trace)) for n, p in result.properties.items()}


def test_seed_tabs_2_is_the_single_process_check(cl):
    model = KVHealModel(Config.make(tabs=2))
    r, stats = cluster.run(model, cl, with_coverage=True)
    assert (r.states, r.transitions, r.depth, r.complete, r.engine) == (7070, 23756, 33, True, "cluster")
    assert lengths(r) == {
        "AckedIsStored": ("holds", 0),
        "CacheFromStore": ("holds", 0),
        "NoDuplicates": ("violated", 9),
        "Converges": ("violated", 16),
        "PendingDrains": ("violated", 22),
    }
    # the gathered graph is renumbered as the single process numbers it: the same traces
    assert plain(r) == plain(check(model, engine="python", with_coverage=True))
    assert stats.workers == 2 and stats.levels == 34
    assert stats.level_sizes[:6] == [1, 4, 8, 12, 20, 34] and sum(stats.level_sizes) == 7070
    # packed words (8 bytes) at most once per state and non-owner, plus an int32 reply each
    assert 0 < stats.search_bytes <= 12 * 7070
    assert stats.gather_bytes > 6 * 23756


def test_dedupe_tabs_2(cl):
    model = KVHealModel(Config.make(tabs=2, variants="dedupe"))
    r = cluster.check(model, cl)
    assert (r.states, r.transitions, r.depth) == (3329, 11786, 23)
    assert plain(r) == plain(check(model, engine="python"))


def test_invariants_only_send_packed_words_once_and_rebuild_traces_across_partitions(cl):
    model = KVHealModel(Config.make(tabs=2))
    only = {"NoDuplicates", "AckedIsStored"}
    r, stats = cluster.run(model, cl, only=only)
    assert (r.states, r.transitions, r.depth) == (7070, 23756, 33)
    assert lengths(r) == {"AckedIsStored": ("holds", 0), "NoDuplicates": ("violated", 9)}
    assert_counterexample(model, "NoDuplicates", r.properties["NoDuplicates"].trace.as_json())
    # no graph: nothing gathered, and at most one packed state (8 bytes) per state explored
    assert stats.gather_bytes == 0
    assert 0 < stats.search_bytes <= 8 * 7070


def test_the_state_bound_stops_at_a_level(cl):
    model = KVHealModel(Config.make(tabs=2))
    r, stats = cluster.run(model, cl, max_states=1000)
    # levels 0..10 hold 1+4+8+12+20+34+52+84+131+162+192 = 700 states, level 11 268 more
    assert (r.states, r.complete) == (1 + 4 + 8 + 12 + 20 + 34 + 52 + 84 + 131 + 162 + 192 + 268 + 342, False)
    assert r.stop_reason.startswith("the state bound")
    assert r.properties["NoDuplicates"].status == "violated"  # found at depth 9, inside the bound
    assert len(r.properties["NoDuplicates"].trace) == 9
    assert {str(p.status) for n, p in r.properties.items() if n != "NoDuplicates"} == {"unknown"}


def test_a_killed_worker_fails_the_run_with_unknown(cl):
    model = KVHealModel(Config.make(tabs=2))
    pids: list[int] = []
    levels = []

    def kill_at_level_5(p) -> None:
        levels.append(p)
        if len(levels) == 5:
            os.kill(pids[1], signal.SIGKILL)

    r = cluster.check(model, cl, progress=kill_at_level_5, on_start=pids.extend)
    assert len(pids) == 2 and len(levels) == 5  # killed mid-run: tabs 2 has 34 levels
    assert r.complete is False and r.stop_reason.startswith("a cluster worker died")
    assert {str(p.status) for p in r.properties.values()} == {"unknown"}
    assert exit_status(r.properties.values()) == 3
    # the cluster itself lives on: the next run is whole
    assert cluster.check(model, cl, only={"NoDuplicates"}).states == 7070


def test_a_cluster_without_room_for_the_workers_gives_up(cl, monkeypatch):
    # 3 partitions on a cluster of 2 CPUs: the third worker never starts
    monkeypatch.setattr(cluster, "START_TIMEOUT", 2.0)
    monkeypatch.setattr(cl, "workers", 3)
    r = cluster.check(KVHealModel(Config.make(tabs=2)), cl)
    assert r.stop_reason.startswith("a cluster of 3 workers did not start within 2 s")
    assert {str(p.status) for p in r.properties.values()} == {"unknown"}
    monkeypatch.undo()
    assert cluster.check(KVHealModel(Config.make(tabs=2)), cl, only={"AckedIsStored"}).states == 7070


def kvheal(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kvheal", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **(env or {})},
    )


def test_cli_on_a_running_cluster_and_a_worker_lost(cl):
    address = ray.get_runtime_context().gcs_address
    proc = kvheal("check", "--tabs", "2", "--variant", "dedupe", "--cluster", address, "--json", "-q")
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["states"], out["transitions"], out["depth"], out["engine"]) == (3329, 11786, 23, "cluster")
    model = KVHealModel(Config.make(tabs=2, variants="dedupe"))
    ref = plain(check(model, engine="python"))
    assert out["properties"] == ref["properties"]
    proc = kvheal(
        "check", "--tabs", "2", "--cluster", address, "--json", "-q", env={"KVHEAL_CLUSTER_FAULT": "1:5"}
    )
    assert proc.returncode == 3, proc.stderr
    assert {p["status"] for p in json.loads(proc.stdout)["properties"].values()} == {"unknown"}
    assert "a cluster worker died" in proc.stderr


def test_without_ray_the_cli_says_how_to_install_it():
    code = (
        "import sys, runpy; sys.modules['ray'] = None; "
        "sys.argv = ['kvheal', 'check', '--tabs', '2', '--cluster', 'local:2']; "
        "runpy.run_module('kvheal', run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "pip install 'kvheal[cluster]'" in proc.stderr


def test_local_needs_a_number_of_workers():
    proc = kvheal("check", "--tabs", "2", "--cluster", "local:0")
    assert proc.returncode == 2
    assert "local:N needs a number of workers N >= 1" in proc.stderr
