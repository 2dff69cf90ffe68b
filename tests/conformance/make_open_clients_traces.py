"""Write the counterexamples of the open clients' as-built designs that
test_open_clients_replay.py replays (the checks are too slow for the default run).

    .venv/bin/python -m tests.conformance.make_open_clients_traces

runs, for each fixture of `FIXTURES`, `kvheal check ... --workers 1 --json` (the compiled
engine, one worker: the same traces every run) and writes its violated properties' traces and
configuration to data/<name>.json, as make_as_built_traces.py does:

* ``as_built_ai_channel_t2``: `--tabs 2 --variant as_built,ai_channel` (6.5M states);
* ``as_built_clock_skew_t2``: `--tabs 2 --variant as_built,clock_skew` (5.4M states);
* ``as_built_repost_t2``: `--tabs 2 --variant as_built,repost` (43M states).

The first two take some 10 s alone on two cores, the third about 80 s (more on a busy machine).

The slow test `test_the_open_clients_fixtures_are_what_check_finds` runs the same checks and
compares.
"""

from __future__ import annotations

import json

from .make_as_built_traces import generate as _generate
from .make_as_built_traces import path

FIXTURES = {
    "as_built_ai_channel_t2": ["--tabs", "2", "--variant", "as_built,ai_channel"],
    "as_built_clock_skew_t2": ["--tabs", "2", "--variant", "as_built,clock_skew"],
    "as_built_repost_t2": ["--tabs", "2", "--variant", "as_built,repost"],
}


def generate(name: str) -> dict:
    """Fixture `name`'s content, from a fresh check."""
    return _generate(name, FIXTURES[name])


def main() -> None:
    for name in FIXTURES:
        path(name).write_text(json.dumps(generate(name), indent=1) + "\n")
        print(f"wrote {path(name)}")


if __name__ == "__main__":
    main()
