"""Write the as_built counterexamples at tabs 2 that test_as_built_replay.py replays.

    .venv/bin/python tests/conformance/make_as_built_traces.py

runs `kvheal check --tabs 2 --variant as_built --json` (the compiled engine, one worker: the
same traces every run; 30 to 75 s and up to 1.9 GiB on two cores) and writes its violated
properties' traces and configuration to data/as_built_t2.json. The slow test
`test_the_fixture_is_what_check_finds` runs the same check and compares.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FIXTURE = Path(__file__).with_name("data") / "as_built_t2.json"
COMMAND = ["check", "--tabs", "2", "--variant", "as_built", "--workers", "1", "--json"]


def generate() -> dict:
    """The fixture's content, from a fresh check."""
    out = subprocess.run(
        [sys.executable, "-m", "kvheal", *COMMAND], capture_output=True, text=True, check=False
    )
    if out.returncode != 1:
        raise RuntimeError(f"kvheal {' '.join(COMMAND)} exited {out.returncode}: {out.stderr.strip()}")
    data = json.loads(out.stdout)
    return {
        "command": "kvheal " + " ".join(COMMAND),
        "config": data["config"],
        "states": data["states"],
        "properties": {
            name: {"status": p["status"], "trace": p["trace"]}
            for name, p in data["properties"].items()
            if p["status"] == "violated"
        },
    }


def main() -> None:
    FIXTURE.write_text(json.dumps(generate(), indent=1) + "\n")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()
