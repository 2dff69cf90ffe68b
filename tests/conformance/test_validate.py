"""Trace validation: logs of KV operations checked against the model, from in-process runs
(with and without planted bugs) and from free runs of the served worker on SQLite and Redis."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from kvheal.cli import main
from kvheal.conformance.faults import FAULTS
from kvheal.conformance.freerun import free_run
from kvheal.conformance.system import InProcessSystem
from kvheal.conformance.validate import ILLEGAL, OK, infer_ids, validate_records
from kvheal.impl.kv import LoggedKV
from kvheal.impl.redis_server import redis_server_binary
from kvheal.model import Config, KVHealModel

#: the bot's actions that start a request (its scan, a claim, a completion, the fixed scan)
BOT_STARTS = ("ScanRead", "ClaimRead", "ClaimRead2", "ClaimCas", "ClaimCas2", "Complete", "ScanPatch")


def logged_run(variants: str, seed: int, fault: str | None = None, steps: int = 50):
    """A random in-process run (model actions and free KV releases) whose KV calls are logged."""
    config = Config.make(tabs=2, variants=variants)
    model = KVHealModel(config)
    records: list[dict] = []
    hooks = FAULTS[fault].hooks if fault else {}
    inner_wrap = hooks.get("wrap_kv")

    def wrap(kv):
        return LoggedKV(inner_wrap(None, kv) if inner_wrap else kv, records.append)

    make_app = hooks.get("make_app")
    system = InProcessSystem(
        config, wrap_kv=wrap, make_app=(lambda kv, wc: make_app(None, kv, wc)) if make_app else None
    )
    rnd = random.Random(seed)
    try:
        for _ in range(steps):
            gates = system.kv_gates()
            if gates and rnd.random() < 0.3:
                system.release(rnd.choice(gates))
                continue
            options = [
                a
                for a in model.instances
                if system.can_perform(a)
                and a.name in ("PostKey", "PollRead", "SweepList", "PostAck", "PollDone", *BOT_STARTS)
            ] + [
                a
                for a in model.instances
                if a.name.startswith(("Post", "Heal", "Sweep", "Scan", "Claim"))
                and a.name not in ("PostKey", "SweepList", *BOT_STARTS)
                and system.can_perform(a)
            ]
            if not options:
                break
            try:
                system.perform(rnd.choice(options))
            except Exception:  # noqa: BLE001 - an action this random walk could not take
                pass
    finally:
        system.close()
    return records, system.ids, config


@pytest.mark.parametrize(
    "variants",
    [
        "",
        "dedupe",
        "atomic_cache",
        "sweeper",
        "dedupe,atomic_cache,sweeper",
        "shared_pending",
        # the bot's requests (SPEC §8): the as-built scan, get-then-put and swapped claims
        "dedupe,keep_verifying,bot_scan",
        "atomic_cache,bot_claims,claim_cas",
        "bot_scan,bot_claims",
        # statuses: the bot's completions (PATCH status, then the patch of every copy), the
        # as-built scan's put and the fixed scan's patch keep the ids they read
        "statuses",
        "statuses,bot_scan",
    ],
)
def test_in_process_runs_are_behaviours_of_the_model(variants):
    for seed in range(15):
        records, ids, config = logged_run(variants, seed)
        v = validate_records(records, tabs=2, variants=config.variants, ids=ids)
        assert v.status == OK, (seed, v.reason, v.record)


def test_a_scan_that_drops_an_id_it_read_is_illegal():
    """A status writer's write of the cache must hold exactly the ids its read saw: a scan that
    wrote back less than it read is caught at that write."""
    config = Config.make(tabs=2, variants="dedupe,keep_verifying,bot_scan")
    ids = ["m0", "m1"]
    cache = ["m0"]  # the log summarises a cache value as its ids

    def log(written: list) -> list[dict]:
        return [
            {"rid": "p0", "endpoint": "post", "mid": "m0", "op": "put", "key": "comment:m0"},
            {
                "rid": "p0",
                "endpoint": "post",
                "mid": "m0",
                "op": "get",
                "key": "recent:comments",
                "value": [],
            },
            {
                "rid": "p0",
                "endpoint": "post",
                "mid": "m0",
                "op": "put",
                "key": "recent:comments",
                "value": cache,
            },
            {"rid": "s1", "endpoint": "scan", "op": "get", "key": "recent:comments", "value": cache},
            {"rid": "s1", "endpoint": "scan", "op": "get", "key": "status:m0", "value": None},
            {"rid": "s1", "endpoint": "scan", "op": "put", "key": "recent:comments", "value": written},
        ]

    v = validate_records(log(cache), tabs=2, variants=config.variants, ids=ids)
    assert v.status == OK, v.reason
    bad = log([])
    v = validate_records(bad, tabs=2, variants=config.variants, ids=ids)
    assert v.status == ILLEGAL and "the scan request wrote [], having read" in v.reason


@pytest.mark.parametrize(
    "fault, reason",
    [
        ("cache_before_key", "touches the cache before writing its key"),
        ("cas_ignores_version", "the swap succeeded but the version moved since its read"),
    ],
)
def test_planted_bugs_make_illegal_logs(fault, reason):
    found = []
    for seed in range(30):
        records, ids, config = logged_run(FAULTS[fault].variants, seed, fault)
        v = validate_records(records, tabs=2, variants=config.variants, ids=ids)
        if v.status == ILLEGAL:
            found.append(v)
    assert found, f"{fault} never caught"
    assert reason in found[0].reason
    assert found[0].line is None or found[0].line >= 1
    assert found[0].record["op"] in ("get", "cas", "put")


def test_first_bad_operation_is_reported(tmp_path):
    records, ids, config = logged_run("", 3)
    puts = [i for i, r in enumerate(records) if r["op"] == "put" and r["key"] == "recent:comments"]
    assert puts
    bad = [dict(r) for r in records]
    bad[puts[0]]["value"] = list(reversed(bad[puts[0]]["value"])) + [ids[0]]
    log = tmp_path / "ops.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in bad))
    from kvheal.conformance.validate import validate_log

    v = validate_log(str(log), tabs=2, ids=ids)
    assert v.status == ILLEGAL
    assert v.line == puts[0] + 1
    assert "wrote" in v.reason and v.state["cache"] is not None


def test_infer_ids():
    recs = [{"op": "put", "key": f"comment:r0-t{m % 8}-m{m}"} for m in (10, 2, 1)]
    assert infer_ids(recs) == ["r0-t1-m1", "r0-t2-m2", "r0-t2-m10"]


#: in the default run: each design once, each backend twice (the rest under -m slow)
FREE_RUN_DEFAULT = {("", "redis"), ("dedupe", "sqlite"), ("atomic_cache", "sqlite"), ("sweeper", "redis")}


@pytest.mark.parametrize(
    "variants,backend",
    [
        pytest.param(v, b, marks=[] if (v, b) in FREE_RUN_DEFAULT else [pytest.mark.slow])
        for v in ("", "dedupe", "atomic_cache", "sweeper")
        for b in ("sqlite", "redis")
    ],
    ids=lambda v: v or "seed",
)
def test_free_run_is_a_behaviour_of_the_model(tmp_path, backend, variants):
    """Served worker: 3 uvicorn processes, 8 tabs posting at once, real SQLite / Redis, no gates."""
    if backend == "redis" and redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    run = free_run(
        str(tmp_path / "ops.jsonl"), tabs=8, per_tab=1, variants=variants, backend=backend, workers=3
    )
    assert run.report.summary["acked"] == 8
    assert run.validation.status == OK, (run.validation.reason, run.validation.record)
    assert run.validation.operations >= 8 * 3


def test_cli_validate(tmp_path):
    records, ids, config = logged_run("", 1)
    log = tmp_path / "ops.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    ids_file = tmp_path / "ids.json"
    ids_file.write_text(json.dumps(list(ids)))
    result = CliRunner().invoke(main, ["validate", str(log), "--tabs", "2", "--ids", str(ids_file), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"] == "ok"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    result = CliRunner().invoke(main, ["validate", str(bad), "--tabs", "2"])
    assert result.exit_code == 2 and "not a JSON line" in result.output


def test_stress_record_validates_every_run(tmp_path):
    """`kvheal stress --record LOG`: several runs (the log marks each fresh store), validated."""
    log = tmp_path / "rec.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "stress",
            "--tabs",
            "8",
            "--runs",
            "2",
            "--workers",
            "2",
            "--variant",
            "sweeper",
            "--record",
            str(log),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # the sweeper may log passes before the first run: those form one more (empty-store) segment
    assert data["validation"]["status"] == "ok" and data["validation"]["runs"] >= 2
    assert sum(1 for line in log.read_text().splitlines() if '"op":"clear"' in line) == 2


def test_a_read_of_the_cleared_store_logged_before_the_clear_goes_after_it():
    """Lines land when calls end, so another process's read of the emptied store can precede
    the clear's line: by their intervals it belongs to the fresh store (a CI failure once)."""
    records, _, _ = logged_run("", 1)
    records = [r for r in records if r["op"] != "clear"]
    end = max(int(r["t1"]) for r in records)
    clear = {"op": "clear", "run": 1, "t0": end + 10, "t1": end + 20}
    late_read = {"op": "get", "key": "recent:comments", "value": None, "rid": "t0-read-9", "endpoint": "read"}
    late_read.update(mid=None, pid=1, t0=end + 30, t1=end + 40)
    assert any(r["op"] == "put" and r["key"] == "recent:comments" and r["value"] for r in records)
    logged = [*records, late_read, clear]
    result = validate_records(logged, tabs=2)
    assert result.status == OK and result.runs == 2, (result.reason, result.record)
    # a read of the old cache overlapping the clear stays before it
    cache = [r["value"] for r in records if r["op"] == "put" and r["key"] == "recent:comments"][-1]
    overlapping = {**late_read, "value": cache, "t0": end + 5, "t1": end + 15}
    assert validate_records([*records, overlapping, clear], tabs=2).status == OK
    # without intervals, lines decide: the same read in the first run is illegal there
    untimed = [{k: v for k, v in r.items() if k not in ("t0", "t1")} for r in logged]
    assert validate_records(untimed, tabs=2).status == "illegal"


def test_stress_record_and_op_log_conflict(tmp_path):
    result = CliRunner().invoke(
        main, ["stress", "--record", str(tmp_path / "a"), "--op-log", str(tmp_path / "b")]
    )
    assert result.exit_code == 2 and "not both" in result.output
