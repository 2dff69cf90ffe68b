"""The partitioned search of model/cluster.py without Ray: ``inproc:N`` runs N partitions in
this process, through the same driver (levels, routing, numbering, gather, traces rebuilt
across partitions), so it is tested where the cluster extra is not installed too."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kvheal.model import Config, KVHealModel, check, cluster

from .conftest import assert_counterexample


def plain(result) -> dict:
    out = result.as_json()
    out.pop("seconds"), out.pop("engine")
    return out


@pytest.mark.parametrize("parts", [1, 3])
def test_partitions_give_the_single_process_check(parts):
    model = KVHealModel(Config.make(tabs=2))
    r, stats = cluster.run(model, f"inproc:{parts}", with_coverage=True)
    assert (r.states, r.transitions, r.depth, r.engine) == (7070, 23756, 33, "cluster")
    assert plain(r) == plain(check(model, engine="python", with_coverage=True))
    assert sum(stats.level_sizes) == 7070 and stats.levels == 34
    if parts == 1:
        assert stats.search_bytes == 0
    else:
        # a state goes at most once to its owner from each other worker (8 bytes), and the
        # owner answers with its number for it (4 bytes)
        assert 0 < stats.search_bytes <= (parts - 1) * 12 * 7070


def test_invariant_traces_are_rebuilt_across_three_partitions():
    model = KVHealModel(Config.make(tabs=2, variants="keep_verifying"))
    ref = check(model, engine="python", only={"NoDuplicates"})
    r, stats = cluster.run(model, "inproc:3", only={"NoDuplicates"})
    assert (r.states, r.transitions, r.depth) == (ref.states, ref.transitions, ref.depth)
    trace = r.properties["NoDuplicates"].trace
    assert len(trace) == len(ref.properties["NoDuplicates"].trace) == 9
    assert_counterexample(model, "NoDuplicates", trace.as_json())
    assert stats.gather_bytes == 0 and 0 < stats.search_bytes <= 2 * 8 * r.states


def test_tabs_3_atomic_cache_dedupe_on_two_partitions_is_the_one_worker_check():
    model = KVHealModel(Config.make(tabs=3, variants="atomic_cache,dedupe"))
    a = cluster.check(model, "inproc:2")
    b = check(model, engine="compiled", workers=1)
    assert (a.states, a.transitions, a.depth) == (60_230, 308_526, 27)
    assert plain(a) == plain(b)


def test_states_of_two_words_partition_alike():
    # per_tab 4 at one tab: a state packs into 2 words (16 bytes); its space is large, so the
    # first levels up to 20,000 states, on 3 partitions as on one (which routes nothing)
    model = KVHealModel(Config.make(tabs=1, per_tab=4))
    assert model.compiled().packing.words == 2
    one, s1 = cluster.run(model, "inproc:1", max_states=20_000, only={"NoDuplicates"})
    three, s3 = cluster.run(model, "inproc:3", max_states=20_000, only={"NoDuplicates"})
    assert s1.level_sizes == s3.level_sizes and sum(s1.level_sizes) == one.states >= 20_000
    assert (one.states, one.transitions, one.depth) == (three.states, three.transitions, three.depth)
    assert (three.states, three.transitions, three.depth) == (22_381, 55_590, 12)
    assert len(three.properties["NoDuplicates"].trace) == len(one.properties["NoDuplicates"].trace)
    assert s1.search_bytes == 0 and 0 < s3.search_bytes <= 2 * 16 * three.states


def test_cluster_and_simulate_exclude_each_other():
    proc = subprocess.run(
        [sys.executable, "-m", "kvheal", "check", "--tabs", "2", "--simulate", "3", "--cluster", "local:2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--cluster explores every state; --simulate takes random walks" in proc.stderr
