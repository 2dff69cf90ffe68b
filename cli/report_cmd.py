"""`kvheal report`: check every design, decide the post-mortem's claims, and write a
self-contained dossier (index.html, report.md, every counterexample as SVG, step table and ITF).

The work is the checker's; :mod:`kvheal.model.report` assembles the files. Results are cached
per configuration in ``DIR/.kvheal-cache.json``, keyed by the configuration, kvheal's version
and a digest of the model's source, so a second run only re-assembles.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from kvheal.model import ConfigError, KVHealModel
from kvheal.model import check as run_check
from kvheal.model.report import (
    DESIGNS,
    all_tabs_record,
    assemble,
    config_of,
    design_name,
    designs_for,
    modelled_only,
    record_of,
    z3_record,
)

CACHE = ".kvheal-cache.json"
#: Bumped when a record gains fields (2: z3's all-tabs verdicts, 3: their SMT-LIB queries, 4: vacuity,
#: 5: z3 at the report's size, 6: its SMT-LIB queries), so
#: older caches are not reused.
RECORD_VERSION = 6
#: Model modules that only present results: editing them does not stale a cached verdict.
PRESENTATION = frozenset({"render.py", "itf.py", "report.py", "claims.py"})


def version() -> str:
    try:
        return metadata.version("kvheal")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def model_digest() -> str:
    """A digest of the model package's sources: a cached verdict is stale once they change."""
    h = hashlib.sha256()
    pkg = resources.files("kvheal.model")
    for entry in sorted(pkg.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".py") and entry.name not in PRESENTATION:
            h.update(entry.name.encode())
            h.update(entry.read_bytes())
    return h.hexdigest()[:16]


def impl_digest() -> str:
    """A digest of the real system's and the conformance layer's sources (replays depend on them)."""
    h = hashlib.sha256()
    for package in ("kvheal.impl", "kvheal.conformance"):
        for entry in sorted(resources.files(package).iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".py"):
                h.update(entry.name.encode())
                h.update(entry.read_bytes())
    return h.hexdigest()[:16]


def replay_record(rec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """``kvheal replay --json`` of a record's counterexamples, in a fresh process on the real
    worker (SQLite): per property whether the violation was reproduced, the evidence, and
    where the real system diverged if it could not follow the trace."""
    violated = {n: p for n, p in rec["properties"].items() if p["status"] == "violated"}
    if not violated:
        return {}
    variant = [] if rec["design"] == "seed" else rec["design"].split(",")
    source = {
        "config": {"tabs": rec["tabs"], "per_tab": rec["per_tab"], "cap": rec["cap"], "variant": variant},
        "properties": {n: {"status": "violated", "trace": p["trace"]} for n, p in violated.items()},
    }
    path = workdir / f"{rec['design'].replace(',', '+')}.check.json"
    _write(path, json.dumps(source))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "kvheal", "replay", str(path), "--json"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        results = json.loads(proc.stdout)["results"]
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as e:
        last = getattr(e, "stderr", "") or ""
        return {n: {"error": f"{type(e).__name__} {last.strip()[-200:]}".strip()} for n in violated}
    return {
        r["property"]: {k: r.get(k) for k in ("status", "reproduced", "evidence", "diverged", "backend")}
        for r in results
    }


def cache_key(design: str, tabs: int, digest: str, max_states: int | None = None) -> str:
    """The cache key of a design's check: its name and its flags (a preset such as as_built
    may gain flags while its name stays), the size, the budget, kvheal's version, the model's
    digest and the record's version."""
    return json.dumps(
        {
            "design": design,
            "flags": sorted(config_of(design, 1).variants),
            "tabs": tabs,
            "per_tab": 1,
            "max_states": max_states,
            "kvheal": version(),
            "model": digest,
            "record": RECORD_VERSION,
        },
        sort_keys=True,
    )


def load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def parse_designs(text: str | None, mode: str) -> list[str]:
    if not text:
        return designs_for(mode)
    out = []
    for part in text.split(";") if ";" in text else text.split(" "):
        part = part.strip()
        if not part:
            continue
        try:
            label = design_name(part)
        except ConfigError as e:
            raise click.UsageError(str(e)) from None
        out.append(label)
    return out


@click.command()
@click.option(
    "--out",
    "out_dir",
    default="kvheal-report",
    show_default=True,
    metavar="DIR",
    help="Directory to write index.html, report.md and cex/ into (created if missing).",
)
@click.option(
    "--designs",
    default=None,
    metavar="LIST",
    help="Designs to check, separated by spaces or ';' (each a comma-separated flag list, "
    "'seed' for none; presets such as as_built allowed); default: README's twelve (--quick "
    "leaves out shared_pending) and the app as deployed (as_built, as_built_fixed, and the "
    "refresh probe with its control).",
)
@click.option("--tabs", type=click.IntRange(min=1), default=2, show_default=True, help="Number of tabs (T).")
@click.option(
    "--quick",
    "mode",
    flag_value="quick",
    default=True,
    help="Leave out the designs whose check takes minutes (default).",
)
@click.option("--full", "mode", flag_value="full", help="Check every design, however long it takes.")
@click.option(
    "--max-states",
    type=click.IntRange(min=1),
    default=None,
    help="Stop each check after this many states (its open verdicts are then 'unknown'); "
    "useful beyond tabs 2, where --quick's promise of minutes does not hold.",
)
@click.option(
    "--stress/--no-stress",
    default=None,
    help="Also race the real system with kvheal stress (seed, dedupe, atomic_cache,dedupe at "
    "2, 8 and 16 tabs, 3 runs each; about a minute), time its POSTs (20 bursts of every tab "
    "posting at once; half a minute), plot both, and hunt the conformance layer's planted bugs "
    "with the lockstep machine (about a minute). Default: on with --full.",
)
@click.option(
    "--replay/--no-replay",
    default=True,
    show_default=True,
    help="Replay every counterexample on the real worker and clients (kvheal replay, SQLite).",
)
@click.option("--no-cache", is_flag=True, help="Re-check every design even if cached.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def report(
    out_dir: str,
    designs: str | None,
    tabs: int,
    mode: str,
    max_states: int | None,
    stress: bool | None,
    replay: bool,
    no_cache: bool,
    quiet: bool,
) -> int:
    """Check each design, decide the post-mortem's claims and write a report to DIR.

    Exit status 0 when the report is written (violations are findings, not failures), 2 for
    a usage error."""
    chosen = parse_designs(designs, mode)
    for d in chosen:
        try:
            config_of(d, tabs)
        except ConfigError as e:
            raise click.UsageError(f"{d} at tabs {tabs}: {e}") from None
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "cex").mkdir(exist_ok=True)
    except OSError as e:
        raise click.UsageError(f"cannot create {out}: {e.strerror}") from None
    cache_path = out / CACHE
    cache = {} if no_cache else load_cache(cache_path)
    digest = model_digest()
    console = Console(stderr=True, quiet=quiet)
    records = []
    t0 = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("checking", total=len(chosen))
        for d in chosen:
            key = cache_key(d, tabs, digest, max_states)
            if key in cache:
                progress.update(task, description=f"{d} (cached)")
                records.append(cache[key])
            else:
                progress.update(task, description=f"checking {d} at tabs {tabs}")
                model = KVHealModel(config_of(d, tabs))
                rec = record_of(model, run_check(model, max_states=max_states))
                if rec["complete"] and all(p["status"] == "holds" for p in rec["properties"].values()):
                    from kvheal.model.prove import prove
                    from kvheal.model.smtlib import capture, paired

                    progress.update(task, description=f"z3: {d} at tabs {tabs}")
                    with capture() as calls:
                        fixed = prove(config_of(d, tabs))
                    rec["z3"] = z3_record(fixed)
                    rec["z3_queries"] = paired(fixed, calls)
                from kvheal.model import param  # z3: imported once a design is checked

                # the designs with a parameterized (all-tabs) proof: cheap, so every report has them
                if d in param.ALL_TABS_DESIGNS:
                    from kvheal.model.smtlib import capture, paired, qualified_enums

                    progress.update(task, description=f"z3: {d} for every number of tabs")
                    with qualified_enums(), capture() as calls:
                        proof = param.prove_all_tabs(config_of(d, 1).variants)
                    rec["all_tabs"] = all_tabs_record(proof)
                    rec["all_tabs"]["queries"] = paired(proof, calls)
                records.append(rec)
                cache[key] = rec
                _write(cache_path, json.dumps(cache))
            if modelled_only(d):
                pass  # kvheal replay refuses model-only flags: the real system does not have them
            elif replay and any(p["status"] == "violated" for p in records[-1]["properties"].values()):
                rkey = json.dumps({"replay": key, "impl": impl_digest()}, sort_keys=True)
                if rkey not in cache:
                    progress.update(task, description=f"replaying {d}'s counterexamples on the real system")
                    cache[rkey] = replay_record(records[-1], out / "replay")
                    if not any("error" in r for r in cache[rkey].values()):
                        _write(cache_path, json.dumps(cache))
                records[-1] = {**records[-1], "replay": cache[rkey]}
            progress.advance(task)
        progress.update(task, description=f"assembling the report ({len(records)} designs)")
        skipped = [d for d in DESIGNS if d not in chosen] if not designs else []
        words = ["kvheal", "report", "--out", out_dir, f"--{mode}", "--tabs", str(tabs)]
        words += ["--designs", ";".join(chosen)] if designs else []
        words += ["--max-states", str(max_states)] if max_states else []
        command = " ".join(shlex.quote(w) for w in words)
        measured = latency = planted = None
        if stress if stress is not None else mode == "full":
            measured = run_stress(cache, cache_path, progress, task)
            latency = run_latency(cache, cache_path, progress, task)
            planted = run_planted(cache, cache_path, progress, task)
        files = assemble(
            records,
            {
                "version": version(),
                "command": command.strip(),
                "tabs": tabs,
                "mode": mode,
                "skipped": skipped,
            },
            measured,
            latency,
            planted,
        )
        for rel, text in files.items():
            _write(out / rel, text)
    console.print(
        f"wrote {out / 'index.html'} and {len(files) - 1} other files in {time.perf_counter() - t0:.1f}s"
    )
    return 0


#: What the report races on the real system: designs whose flags change the worker, tab counts.
STRESS_DESIGNS = ("seed", "dedupe", "atomic_cache,dedupe")
STRESS_TABS = (2, 8, 16)
STRESS_RUNS = 3


def run_stress(cache: dict[str, Any], cache_path: Path, progress: Any, task: Any) -> list[dict[str, Any]]:
    """``kvheal stress --json`` per design and number of tabs, each in a fresh process (the
    real worker and clients); results cached like the checks (``--no-cache`` re-measures)."""
    out = []
    for d in STRESS_DESIGNS:
        for n in STRESS_TABS:
            words = ["kvheal", "stress", "--tabs", str(n), "--runs", str(STRESS_RUNS), "--json"]
            words += ["--variant", d] if d != "seed" else []
            command = " ".join(shlex.quote(w) for w in words)
            key = json.dumps({"stress": command, "kvheal": version()}, sort_keys=True)
            if key in cache:
                out.append(cache[key])
                continue
            progress.update(task, description=f"stress: {d} at {n} tabs")
            rec: dict[str, Any] = {"design": d, "tabs": n, "runs": STRESS_RUNS, "command": command}
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "kvheal", *words[1:]], capture_output=True, text=True, timeout=600
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                rec["error"] = f"{type(e).__name__}: {e}"[:200]
            else:
                rec["exit"] = proc.returncode
                try:
                    rec["summary"] = json.loads(proc.stdout)["summary"]
                except (ValueError, KeyError, TypeError):
                    last = proc.stderr.strip().splitlines()[-1:] or ["no output"]
                    rec["error"] = f"exit {proc.returncode}: {last[0][:200]}"
            out.append(rec)
            if "summary" in rec:
                cache[key] = rec
                _write(cache_path, json.dumps(cache))
    return out


#: POST latency: bursts of every tab posting at once, per design and number of tabs.
LATENCY_ROUNDS = 20


def run_latency(cache: dict[str, Any], cache_path: Path, progress: Any, task: Any) -> list[dict[str, Any]]:
    """POST latency of the real worker (:func:`kvheal.latency.measure`) per design of the
    stress runs and number of tabs; cached like them (``--no-cache`` re-measures)."""
    from kvheal.latency import WORKERS, measure

    out = []
    for d in STRESS_DESIGNS:
        for n in STRESS_TABS:
            key = json.dumps(
                {"latency": d, "tabs": n, "rounds": LATENCY_ROUNDS, "workers": WORKERS, "kvheal": version()},
                sort_keys=True,
            )
            if key in cache:
                out.append(cache[key])
                continue
            progress.update(task, description=f"POST latency: {d} at {n} tabs")
            try:
                rec = measure(d, n, LATENCY_ROUNDS)
            except Exception as e:  # the server did not start, a request failed: shown, not fatal
                out.append({"design": d, "tabs": n, "error": f"{type(e).__name__}: {e}"[:200]})
                continue
            out.append(rec)
            cache[key] = rec
            _write(cache_path, json.dumps(cache))
    return out


def run_planted(cache: dict[str, Any], cache_path: Path, progress: Any, task: Any) -> list[dict[str, Any]]:
    """Each planted bug hunted by the lockstep machine (:func:`kvheal.planted.hunt`); cached
    while the real system's and the conformance layer's sources are unchanged."""
    from kvheal.planted import hunt, names

    out = []
    for name in names():
        key = json.dumps({"planted": name, "impl": impl_digest(), "kvheal": version()}, sort_keys=True)
        if key not in cache:
            progress.update(task, description=f"planted bug {name}: the lockstep machine hunts it")
            cache[key] = hunt(name)
            _write(cache_path, json.dumps(cache))
        out.append(cache[key])
    return out


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise click.UsageError(f"cannot write {path}: {e.strerror}") from None
