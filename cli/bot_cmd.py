"""`kvheal bot`: the bot process of SPEC §6 against a running worker (`kvheal serve`).

Configuration mistakes are one-line usage errors (exit 2).
"""

from __future__ import annotations

import json
import os

import click


def _secret(secret_file: str, db: str) -> bytes:
    """The worker's secret as `kvheal serve` reads it: --secret-file's bytes, or the hex in
    DB.secret (what serve keeps for a SQLite store without --secret-file)."""
    from kvheal.impl.config import ConfigError

    if secret_file and db:
        raise ConfigError("give --secret-file or --db, not both")
    if secret_file:
        try:
            with open(secret_file, "rb") as f:
                value = f.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read --secret-file {secret_file}: {exc.strerror or exc}") from None
        if not value:
            raise ConfigError(f"--secret-file {secret_file} is empty")
        return value
    path = (db or "kvheal.sqlite3") + ".secret"
    try:
        with open(path) as f:
            return bytes.fromhex(f.read().strip())
    except OSError:
        raise ConfigError(
            f"no secret: give the --secret-file kvheal serve uses (or --db of its SQLite store; {path} is missing)"
        ) from None
    except ValueError:
        raise ConfigError(f"{path} does not hold a hex secret") from None


@click.command()
@click.option(
    "--url", default="http://127.0.0.1:8787", show_default=True, help="The worker (kvheal serve) to talk to."
)
@click.option(
    "--secret-file", default="", metavar="PATH", help="The heal-token key file kvheal serve was given."
)
@click.option(
    "--db",
    default="",
    metavar="PATH",
    help="Or: the SQLite file of kvheal serve without --secret-file (its key is in DB.secret; default kvheal.sqlite3).",
)
@click.option(
    "--name", default="kvheal-bot", show_default=True, help="The bot's name (its replies' username)."
)
@click.option("--interval", type=float, default=3.0, show_default=True, help="Seconds between passes.")
@click.option(
    "--limit", type=int, default=10, show_default=True, help="Pending messages asked for per pass (1-100)."
)
@click.option(
    "--passes",
    type=int,
    default=0,
    show_default=True,
    help="Stop after this many passes (0: run until interrupted).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per pass on stdout.")
def bot(url, secret_file, db, name, interval, limit, passes, as_json):
    """Run the bot: every INTERVAL seconds scan the queue (GET /api/queue/pending), claim each
    pending message, post an AI reply through POST /api/comments, mark it complete, then read
    the whole cache and heal the replies missing from it (SPEC §6). The list of replies to
    verify is kept in memory only: a restarted bot has forgotten it. Needs the worker's secret
    (the bot token is derived from it). Exit 1 if the last pass failed."""
    import asyncio
    import re

    from kvheal.impl.bot import Bot, BotError, BotPass
    from kvheal.impl.config import ConfigError
    from kvheal.impl.queue_api import MAX_SCAN_LIMIT, bot_token

    try:
        if interval < 0:
            raise ConfigError(f"--interval must be at least 0, got {interval:g}")
        if not 1 <= limit <= MAX_SCAN_LIMIT:
            raise ConfigError(f"--limit must be 1 to {MAX_SCAN_LIMIT}, got {limit}")
        if passes < 0:
            raise ConfigError(f"--passes must be at least 0, got {passes}")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name):
            raise ConfigError("--name must be 1 to 40 letters, digits, '-' or '_'")
        if not re.match(r"https?://[^\s/]+", url):
            raise ConfigError(f"--url must be an http(s) URL, got {url!r}")
        token = bot_token(_secret(secret_file, db))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None

    last: list[bool] = []

    def report(outcome) -> None:
        ok = isinstance(outcome, BotPass)
        last[:] = [ok]
        if as_json:
            if ok:
                line = {
                    "listed": list(outcome.listed),
                    "replied": [list(pair) for pair in outcome.replied],
                    "lost_claims": list(outcome.lost_claims),
                    "found": list(outcome.verify.found),
                    "healed": list(outcome.verify.healed),
                    "given_up": list(outcome.verify.given_up),
                }
            else:
                line = {"error": str(outcome)}
            click.echo(json.dumps(line))
        elif not ok:
            click.echo(f"kvheal bot: pass failed: {str(outcome).splitlines()[0]}", err=True)
        elif outcome.replied or outcome.verify.healed:
            click.echo(
                f"kvheal bot: replied to {len(outcome.replied)}, healed {len(outcome.verify.healed)}",
                err=True,
            )

    async def main() -> None:
        async with Bot(url, token, name=name, limit=limit) as runner:
            await runner.run(interval=interval, max_passes=passes or None, on_pass=report)

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except BotError as exc:  # (run catches a pass's errors; this is a safety net)
        raise click.ClickException(str(exc)) from None
    return 1 if last and not last[0] else 0
