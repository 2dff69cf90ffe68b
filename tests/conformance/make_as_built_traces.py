"""Write the as-built counterexamples that test_as_built_replay.py replays.

    .venv/bin/python tests/conformance/make_as_built_traces.py

runs, for each fixture of `FIXTURES`, `kvheal check ... --workers 1 --json` (the compiled
engine, one worker: the same traces every run) and writes its violated properties' traces and
configuration to data/<name>.json:

* ``as_built_t2``: `--tabs 2 --variant as_built` (about 20 s alone on two cores, up to 75 s
  on a busy machine; up to 1.9 GiB);
* ``as_built_stale_t1``: `--tabs 1 --per-tab 2 --variant as_built,stale_reads` (about 15 s):
  `stale_reads` makes tabs 2 too large (SPEC §6), one tab with two messages has every violation.

The slow test `test_the_fixtures_are_what_check_finds` runs the same checks and compares.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).with_name("data")
FIXTURES = {
    "as_built_t2": ["--tabs", "2", "--variant", "as_built"],
    "as_built_stale_t1": ["--tabs", "1", "--per-tab", "2", "--variant", "as_built,stale_reads"],
}


def path(name: str) -> Path:
    """The fixture file of `name`."""
    return DATA / f"{name}.json"


def generate(name: str, args: list[str] | None = None) -> dict:
    """Fixture `name`'s content, from a fresh check (of `args`, default `FIXTURES[name]`)."""
    command = ["check", *(args or FIXTURES[name]), "--workers", "1", "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "kvheal", *command], capture_output=True, text=True, check=False
    )
    if out.returncode != 1:
        raise RuntimeError(f"kvheal {' '.join(command)} exited {out.returncode}: {out.stderr.strip()}")
    data = json.loads(out.stdout)
    return {
        "command": "kvheal " + " ".join(command),
        "config": data["config"],
        "states": data["states"],
        "properties": {
            name: {"status": p["status"], "trace": p["trace"]}
            for name, p in data["properties"].items()
            if p["status"] == "violated"
        },
    }


def main() -> None:
    for name in FIXTURES:
        path(name).write_text(json.dumps(generate(name), indent=1) + "\n")
        print(f"wrote {path(name)}")


if __name__ == "__main__":
    main()
