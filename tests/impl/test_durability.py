"""Durability and process hygiene of `serve` and `stress`: real redis-server, SQLite files, uvicorn."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx2
import pytest
from click.testing import CliRunner

from kvheal.cli import main
from kvheal.impl.procs import PipeDrain, child_pids_of
from kvheal.impl.redis_server import RedisServer, free_port, redis_server_binary
from kvheal.impl.server import ServeConfig, ServerProcess

needs_redis = pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")


def kvheal(*args: str):
    return CliRunner().invoke(main, list(args))


@needs_redis
@pytest.mark.parametrize(
    "mode, what",
    [
        ("none", "no persistence (neither AOF nor snapshots)"),
        ("rdb", "no AOF (RDB snapshots only: save '3600 1 300 100 60 10000')"),
    ],
)
def test_serve_refuses_redis_without_aof(mode, what):
    with RedisServer(persistence=mode) as server:
        result = kvheal("serve", "--backend", "redis", "--redis-url", server.url, "--port", str(free_port()))
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"kvheal: error: Redis at {server.url} has {what}: acknowledged posts would be lost when it restarts; "
        "enable AOF (appendonly yes) or pass --allow-volatile"
    )


@needs_redis
def test_serve_allow_volatile_warns_and_serves():
    port = free_port()
    with RedisServer(persistence="none") as server:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kvheal",
                "serve",
                "--backend",
                "redis",
                "--redis-url",
                server.url,
                "--port",
                str(port),
                "--allow-volatile",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        drain = PipeDrain(proc.stderr)
        try:
            for _ in range(200):
                try:
                    if httpx2.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                        break
                except httpx2.HTTPError:
                    time.sleep(0.05)
            else:
                raise AssertionError(drain.tail())
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=15)
    first = drain.tail(5).splitlines()[0]
    assert first == (
        f"kvheal: warning: Redis at {server.url} has no persistence (neither AOF nor snapshots): "
        "acknowledged posts are lost when it restarts (--allow-volatile)"
    )


@pytest.mark.parametrize(
    "args, reason",
    [
        (["serve", "--port", "99999"], "kvheal: error: --port must be between 1 and 65535, got 99999"),
        (
            ["serve", "--db", "/nonexistent-kvheal/kv.sqlite3"],
            "kvheal: error: --db /nonexistent-kvheal/kv.sqlite3: the folder /nonexistent-kvheal does not exist",
        ),
        (
            ["serve", "--op-log", "/nonexistent-kvheal/ops.jsonl"],
            "kvheal: error: --op-log /nonexistent-kvheal/ops.jsonl: the folder /nonexistent-kvheal does not exist",
        ),
        (
            ["serve", "--sqlite-sync", "off"],
            "kvheal: error: --sqlite-sync must be one of full, normal, got 'off'",
        ),
        (
            ["serve", "--backend", "redis", "--redis-url", "redis://127.0.0.1:1/0"],
            "kvheal: error: cannot reach Redis at redis://127.0.0.1:1/0: Error 111 connecting to 127.0.0.1:1. "
            "Connect call failed ('127.0.0.1', 1).",
        ),
        (
            ["stress", "--db", "/nonexistent-kvheal/kv.sqlite3"],
            "kvheal: error: --db /nonexistent-kvheal/kv.sqlite3: the folder /nonexistent-kvheal does not exist",
        ),
        (
            ["stress", "--op-log", "/nonexistent-kvheal/ops.jsonl"],
            "kvheal: error: --op-log /nonexistent-kvheal/ops.jsonl: the folder /nonexistent-kvheal does not exist",
        ),
        (
            ["stress", "--record", "/nonexistent-kvheal/ops.jsonl"],
            "kvheal: error: --record /nonexistent-kvheal/ops.jsonl: the folder /nonexistent-kvheal does not exist",
        ),
        (
            ["stress", "--backend", "redis", "--redis-url", "redis://127.0.0.1:1/0"],
            "kvheal: error: cannot reach Redis at redis://127.0.0.1:1/0: Error 111 connecting to 127.0.0.1:1. "
            "Connect call failed ('127.0.0.1', 1).",
        ),
    ],
)
def test_bad_paths_ports_and_servers_are_one_line_exit_2(args, reason):
    t0 = time.monotonic()
    result = kvheal(*args)
    assert (result.exit_code, result.output.strip()) == (2, reason)
    assert time.monotonic() - t0 < 5  # found before any long work


def test_serve_port_in_use_is_one_line():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = kvheal("serve", "--port", str(port))
    assert (result.exit_code, result.output.strip()) == (
        2,
        f"kvheal: error: cannot listen on 127.0.0.1:{port}: Address already in use",
    )


def test_record_refuses_to_overwrite_without_force(tmp_path):
    log = tmp_path / "ops.jsonl"
    log.write_text("keep me\n")
    result = kvheal("stress", "--record", str(log), "--tabs", "2", "--runs", "1")
    assert (result.exit_code, result.output.strip()) == (
        2,
        f"kvheal: error: --record {log} exists; give --force to overwrite it",
    )
    assert log.read_text() == "keep me\n"


def test_recorded_log_names_its_design_and_validate_uses_it(tmp_path):
    log = tmp_path / "ops.jsonl"
    log.write_text("old\n")
    result = kvheal(
        "stress",
        "--record",
        str(log),
        "--force",
        "--tabs",
        "2",
        "--runs",
        "1",
        "--workers",
        "2",
        "--variant",
        "dedupe",
        "--json",
    )
    assert result.exit_code == 0, result.output
    header = json.loads(log.read_text().splitlines()[0])
    assert {k: header[k] for k in ("op", "variants", "cap", "backend")} == {
        "op": "design",
        "variants": ["dedupe"],
        "cap": 200,
        "backend": "sqlite",
    }
    ok = kvheal("validate", str(log))
    assert ok.exit_code == 0, ok.output
    assert "variant=dedupe" in ok.output
    wrong = kvheal("validate", str(log), "--variant", "atomic_cache,dedupe")
    assert (wrong.exit_code, wrong.output.strip()) == (
        2,
        f"kvheal: error: {log} was recorded with the design dedupe, not atomic_cache,dedupe: "
        "omit --variant to use the log's",
    )


def test_killing_serve_main_process_takes_workers_and_frees_the_port(tmp_path):
    config = ServeConfig(
        backend="sqlite",
        variants="dedupe,sweeper",
        workers=2,
        db=str(tmp_path / "kv.sqlite3"),
        sweep_interval=0.2,
    )
    server = ServerProcess(config)
    url = server.start()
    workers = server.worker_pids()
    assert len(workers) == 2
    r = httpx2.post(url + "/api/comments", json={"id": "a", "text": "x", "timestamp": 1})
    assert r.status_code == 200
    assert server.kill() == []  # kill -9 of the main process: no worker outlives it
    with pytest.raises(httpx2.HTTPError):
        httpx2.get(url + "/api/health", timeout=1)
    again = ServerProcess(server.config)  # the same port, at once
    try:
        assert again.start(timeout=15) == url
        assert [c["id"] for c in httpx2.get(url + "/api/comments").json()["comments"]] == ["a"]
    finally:
        again.stop()


def test_sweeper_is_restarted_when_it_dies(monkeypatch):
    import kvheal.impl.server as server_mod

    calls = []

    class DyingSweeper:
        def __init__(self, kv, config):
            pass

        async def run_once(self):
            calls.append(time.monotonic())
            if len(calls) == 1:
                raise SystemExit("the sweeper loop dies")  # escapes `except Exception`

    monkeypatch.setattr(server_mod, "Sweeper", DyingSweeper)
    stop = threading.Event()
    thread = server_mod._sweeper_thread(
        ServeConfig(backend="memory", variants="sweeper", sweep_interval=0.05, secret="ab" * 32), stop
    )
    deadline = time.monotonic() + 10
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    assert len(calls) >= 3 and calls[1] - calls[0] >= 0.9  # restarted after a second


def test_pipe_drain_keeps_a_chatty_child_running():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfor i in range(20000): sys.stderr.write('warning %05d ' % i + 'x' * 40 + '\\n')",
        ],
        stderr=subprocess.PIPE,
    )
    drain = PipeDrain(proc.stderr, keep=1000)
    assert proc.wait(timeout=20) == 0  # 1 MB on stderr: a pipe nobody reads would block at 64 KB
    drain.join(5)
    assert drain.total == 20000 * 55
    assert drain.tail().endswith("warning 19999 " + "x" * 40 + "\n") and len(drain.tail()) <= 1000


@needs_redis
def test_stress_cleans_up_its_processes_on_sigterm(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kvheal",
            "stress",
            "--backend",
            "redis",
            "--tabs",
            "4",
            "--runs",
            "10000",
            "--timeout",
            "600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        family: list[int] = []
        while time.monotonic() < deadline:
            family = child_pids_of(proc.pid, recursive=True)
            if len(family) >= 4:  # redis-server, the served worker, its 2+ processes
                break
            time.sleep(0.1)
        assert len(family) >= 4, family
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in family):
        time.sleep(0.1)
    assert [pid for pid in family if _alive(pid)] == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"
    except OSError:
        return False


def test_stress_report_failure_for_converging_designs():
    from kvheal.impl.stress import RunResult, StressReport, converging_design

    assert converging_design({"atomic_cache", "dedupe"}) and converging_design(
        {"dedupe", "sweeper", "atomic_cache"}
    )
    assert not converging_design({"dedupe"}) and not converging_design({"dedupe", "sweeper", "tab_crash"})

    def run(lost, converged):
        return RunResult(
            run=0,
            acked=3,
            failed_posts=0,
            in_cache_after_post=3,
            in_cache_after_heal=3 - len(lost),
            missing_after_post=[],
            evicted=0,
            lost=lost,
            duplicates=0,
            converged_after_polls=converged,
            heals_sent=0,
            seconds=0.1,
        )

    report = StressReport(
        config={"variants": ["atomic_cache", "dedupe"]}, runs=[run([], 0), run(["m"], None)]
    )
    assert report.failure == "1 acknowledged message(s) lost (neither cached nor evicted)"
    report = StressReport(config={"variants": ["atomic_cache", "dedupe"]}, runs=[run([], None)])
    assert report.failure == "1 of 1 run(s) did not converge"
    assert StressReport(config={"variants": []}, runs=[run(["m"], None)]).failure is None


def test_stress_reports_eviction_apart_from_loss():
    from kvheal.impl.stress import StressConfig, run_stress

    report = run_stress(
        StressConfig(
            tabs=4, per_tab=3, runs=1, backend="memory", cap=5, variants="atomic_cache,dedupe", max_rounds=5
        )
    )
    s = report.summary
    assert (s["acked"], s["in_cache_after_heal"], s["evicted"], s["lost"], s["converged_runs"]) == (
        12,
        5,
        7,
        0,
        1,
    )
    assert report.failure is None
