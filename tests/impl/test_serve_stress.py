"""`kvheal serve` and `kvheal stress` end to end: real processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx2
import pytest
from click.testing import CliRunner

from kvheal.cli import main
from kvheal.flags import MODELLED_ONLY, REQUIRES, ConfigError, parse_variants
from kvheal.impl.redis_server import free_port
from kvheal.impl.server import ServeConfig, ServerProcess
from kvheal.impl.stress import StressConfig, run_stress

#: a flag only the model has, and the variant list that names it (with the flag it needs), for
#: the refusals below: none once the implementation has every flag
MODEL_ONLY = [(f, ",".join(filter(None, (REQUIRES.get(f), f)))) for f in sorted(MODELLED_ONLY)[:1]]


def kvheal(*args: str):
    return CliRunner().invoke(main, list(args))


def _unknown_flag_message(flag: str) -> str:
    """The registry's own one-line message for an unknown flag (it lists every known flag)."""
    with pytest.raises(ConfigError) as info:
        parse_variants(f"dedupe,{flag}")
    return str(info.value)


@pytest.mark.parametrize(
    "args, reason",
    [
        (
            ["serve", "--backend", "foo"],
            "kvheal: error: unknown backend 'foo' (known: sqlite, redis, memory)",
        ),
        (["serve", "--variant", "dedupe,nope"], "kvheal: error: " + _unknown_flag_message("nope")),
        *[
            (
                ["serve", "--variant", variants],
                f"kvheal: error: {flag} is modelled only: the worker and the client do not implement it "
                "(kvheal check and prove decide it)",
            )
            for flag, variants in MODEL_ONLY
        ],
        (
            ["serve", "--backend", "memory", "--workers", "2"],
            "kvheal: error: the memory backend lives in one process: use --workers 1, or sqlite/redis",
        ),
        (["serve", "--cap", "0"], "kvheal: error: --cap must be at least 1, got 0"),
        (
            ["stress", "--backend", "nope"],
            "kvheal: error: unknown backend 'nope' (known: sqlite, redis, memory)",
        ),
        (["stress", "--tabs", "0"], "kvheal: error: --tabs must be between 1 and 1024, got 0"),
        (
            ["stress", "--poll-ms", "1,2"],
            "kvheal: error: --poll-ms wants FIRST,STEP,MAX in milliseconds, got '1,2'",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, reason):
    result = kvheal(*args)
    assert result.exit_code == 2
    assert result.output.strip() == reason  # CliRunner mixes stderr into output


def test_serve_command_with_two_processes_and_restart(tmp_path):
    port = free_port()
    db = str(tmp_path / "kv.sqlite3")
    cmd = [
        sys.executable,
        "-m",
        "kvheal",
        "serve",
        "--db",
        db,
        "--port",
        str(port),
        "--workers",
        "2",
        "--variant",
        "dedupe",
    ]

    def start():
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        for _ in range(300):
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                    return proc
            except httpx2.HTTPError:
                time.sleep(0.05)
        proc.kill()
        raise AssertionError(proc.stderr.read().decode())

    def stop(proc):
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        proc.stderr.close()

    proc = start()
    try:
        r = httpx2.post(
            f"http://127.0.0.1:{port}/api/comments", json={"id": "a", "text": "x", "timestamp": 1}
        )
        token = r.json()["healToken"]
    finally:
        stop(proc)
    assert os.path.exists(db + ".secret")
    proc = start()  # the heal token of a message posted before a restart still works
    try:
        r = httpx2.post(
            f"http://127.0.0.1:{port}/api/admin/add-to-cache", json={"messageId": "a", "healToken": token}
        )
        assert r.json() == {"success": True, "added": False, "result": "already present"}
        r = httpx2.get(f"http://127.0.0.1:{port}/api/comments")
        assert [c["id"] for c in r.json()["comments"]] == ["a"]
    finally:
        stop(proc)


def test_sweeper_runs_once_for_several_processes(tmp_path):
    import asyncio

    from kvheal.impl.sqlite_kv import SqliteKV

    config = ServeConfig(
        backend="sqlite",
        variants="sweeper",
        workers=2,
        db=str(tmp_path / "kv.sqlite3"),
        sweep_interval=0.02,
        op_log=str(tmp_path / "ops.jsonl"),
    )
    with ServerProcess(config) as url:

        async def plant():  # a message whose post never reached the cache
            kv = SqliteKV(config.db)
            await kv.put("comment:lost", json.dumps({"id": "lost", "text": "x", "timestamp": 5}))
            await kv.aclose()

        asyncio.run(plant())
        for _ in range(200):
            ids = [c["id"] for c in httpx2.get(url + "/api/comments").json()["comments"]]
            if ids:
                break
            time.sleep(0.02)
        assert ids == ["lost"]
    records = [json.loads(line) for line in open(config.op_log)]
    header = records.pop(0)  # the design header, written once by the main process
    assert {k: header[k] for k in ("op", "variants", "cap", "backend", "workers")} == {
        "op": "design",
        "variants": ["sweeper"],
        "cap": 200,
        "backend": "sqlite",
        "workers": 2,
    }
    assert all(r["op"] != "design" for r in records)
    sweep_pids = {r["pid"] for r in records if r["endpoint"] == "sweep"}
    assert len(sweep_pids) == 1
    assert {r["endpoint"] for r in records} == {"sweep", "read"}


def test_stress_seed_heals_and_atomic_never_misses(tmp_path):
    seed = run_stress(StressConfig(tabs=6, runs=3, workers=2, max_rounds=40))
    s = seed.summary
    assert (s["runs"], s["acked"], s["failed_posts"]) == (3, 18, 0)
    assert s["in_cache_after_heal"] == 18 and s["converged_runs"] == 3
    assert s["in_cache_after_post"] + s["missing_after_post"] == 18
    atomic = run_stress(StressConfig(tabs=6, runs=3, workers=2, variants="atomic_cache,dedupe"))
    s = atomic.summary
    assert (
        s["acked"],
        s["in_cache_after_post"],
        s["missing_after_post"],
        s["duplicates"],
        s["heals_sent"],
        s["converge_polls_max"],
    ) == (18, 18, 0, 0, 0, 0)


def test_stress_tabs_give_up_messages_the_window_moved_past():
    """Six tabs post at once into a cache of 3: the three oldest messages are evicted. Each owner
    heals its evicted message once, is answered "outside the cache's window", and gives it up
    (it leaves the pending list), so the run ends at once instead of healing every round until
    max_rounds (3 heals a round, 90 in all, before give_up_hopeless)."""
    report = run_stress(
        StressConfig(tabs=6, runs=1, backend="memory", cap=3, variants="atomic_cache,dedupe", max_rounds=30)
    )
    s = report.summary
    assert (s["acked"], s["evicted"], s["lost"], s["converged_runs"]) == (6, 3, 0, 1)
    assert (s["heals_sent"], s["heals_given_up"]) == (3, 3)
    assert report.runs[0].seconds < 4  # 30 rounds of the 20 ms (+10 ms) schedule take over 4 s


@pytest.mark.parametrize("variants", ["keep_verifying,dedupe", "shared_pending", "tab_crash", "sweeper"])
def test_stress_client_variants_on_memory(variants):
    report = run_stress(
        StressConfig(tabs=4, per_tab=2, runs=2, backend="memory", variants=variants, max_rounds=10)
    )
    s = report.summary
    assert (s["runs"], s["acked"]) == (2, 16)
    if variants in ("keep_verifying,dedupe", "sweeper"):
        assert s["in_cache_after_heal"] == 16
    # shared_pending and tab_crash may end with messages nobody heals: the tabs' writes of the
    # shared list overwrite each other, and a dead tab's list is never read. That is their point.


def test_stress_command_json():
    result = kvheal("stress", "--tabs", "3", "--runs", "1", "--backend", "memory", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["summary"]["acked"] == 3 and report["config"]["workers"] == 1
    assert len(report["runs"]) == 1


def test_serve_help_says_which_variants_are_client_side():
    result = kvheal("serve", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "keep_verifying, shared_pending and tab_crash change the clients" in text


def test_build_kv_wrappers(tmp_path):
    from kvheal.impl.kv import LoggedKV, StaleReadKV
    from kvheal.impl.server import build_kv

    kv = build_kv(ServeConfig(backend="memory", stale_ms=50, op_log=str(tmp_path / "ops.jsonl")))
    assert isinstance(kv, LoggedKV) and isinstance(kv.inner, StaleReadKV) and kv.inner.max_staleness == 0.05
    kv.sink.close()
    secret_a = ServeConfig(db=str(tmp_path / "a.sqlite3")).with_secret().secret
    assert (
        ServeConfig(db=str(tmp_path / "a.sqlite3")).with_secret().secret == secret_a
    )  # kept in a.sqlite3.secret
    assert (
        ServeConfig(backend="memory").with_secret().secret
        != ServeConfig(backend="memory").with_secret().secret
    )


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_512_tabs_at_once_refuses_no_post(backend):
    """The Redis pool waits for a connection instead of failing; SQLite waits for its lock."""
    if backend == "redis":
        from kvheal.impl.redis_server import redis_server_binary

        if redis_server_binary() is None:
            pytest.skip("redis-server is not installed")
    report = run_stress(StressConfig(tabs=512, runs=1, backend=backend, max_rounds=0))
    s = report.summary
    assert (s["acked"], s["failed_posts"]) == (512, 0)
    assert s["in_cache_after_post"] + s["missing_after_post"] == 512
