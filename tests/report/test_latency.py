"""POST latency: measured on the real worker, drawn in the report's real-system section."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from kvheal.latency import measure, percentile, summarize
from kvheal.model.render import PALETTE
from kvheal.model.report import assemble

from .test_report import META, small_records

SVG = "{http://www.w3.org/2000/svg}"


def rec(design, tabs, p50, p99):
    return {
        "design": design,
        "tabs": tabs,
        "rounds": 20,
        "backend": "sqlite",
        "workers": 4,
        "posts": 20 * tabs,
        "errors": 0,
        "p50_ms": p50,
        "p90_ms": (p50 + p99) / 2,
        "p99_ms": p99,
        "max_ms": p99 + 1,
        "mean_ms": p50 + 0.5,
        "latencies_ms": [],
    }


def test_percentiles_and_summary():
    xs = [float(x) for x in range(1, 101)]
    assert (percentile(xs, 0.5), percentile(xs, 0.9), percentile(xs, 0.99)) == (50.0, 90.0, 99.0)
    assert percentile([7.0], 0.99) == 7.0
    s = summarize(list(reversed(xs)), 2)
    assert s == {
        "posts": 100,
        "errors": 2,
        "p50_ms": 50.0,
        "p90_ms": 90.0,
        "p99_ms": 99.0,
        "max_ms": 100.0,
        "mean_ms": 50.5,
    }


def test_the_real_worker_is_timed():
    """A real served worker (SQLite, two processes): two tabs post at once, three times."""
    r = measure("atomic_cache,dedupe", 2, 3, workers=2)
    assert (r["design"], r["tabs"], r["rounds"], r["posts"], r["errors"]) == (
        "atomic_cache,dedupe",
        2,
        3,
        6,
        0,
    )
    lat = r["latencies_ms"]
    assert len(lat) == 6 and lat == sorted(lat) and lat[0] > 0
    assert r["p50_ms"] == lat[2] and r["max_ms"] == r["p99_ms"] == lat[-1]
    assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] < 10_000


def test_latency_chart_and_table():
    latency = [
        rec("seed", 2, 7.5, 30.0),
        rec("seed", 16, 26.0, 54.0),
        rec("atomic_cache,dedupe", 2, 8.0, 34.0),
        rec("atomic_cache,dedupe", 16, 24.0, 48.0),
        {"design": "dedupe", "tabs": 2, "error": "RuntimeError: the server did not start"},
    ]
    files = assemble(small_records(), META, None, latency)
    md = files["report.md"]
    assert "### POST latency" in md
    assert "| seed | 16 | 320 (20 bursts) | 26.0 | 40.0 | 54.0 | 55.0 | 26.5 |" in md
    assert "| dedupe | 2 | failed: RuntimeError: the server did not start |" in md
    svg = files["stress/post-latency.svg"]
    assert svg in files["index.html"] and "(stress/post-latency.svg)" in md
    root = ET.fromstring(svg)
    # a solid median line and a dashed p99 line per design that was measured, in its colour
    paths = [(p.get("stroke"), p.get("stroke-dasharray")) for p in root.iter(f"{SVG}path")]
    assert sorted(paths, key=str) == sorted(
        [(PALETTE[0], None), (PALETTE[0], "6,4"), (PALETTE[1], None), (PALETTE[1], "6,4")], key=str
    )
    assert len(list(root.iter(f"{SVG}circle"))) == 8
    legend = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert {"seed median", "seed p99", "atomic_cache,dedupe median", "atomic_cache,dedupe p99"} <= set(legend)
    assert json.loads(files["stress/latency.json"]) == latency
    assert "stress/post-latency.svg" not in assemble(small_records(), META)
