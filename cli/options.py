"""Options shared by the commands that build a model configuration (check, bench, prove)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from kvheal.model import Config, ConfigError


def config_options(func: Callable[..., Any] | None = None, *, tabs: int = 2,
                   variant: str = "") -> Any:
    """Add SPEC §9's ``--tabs``, ``--per-tab``, ``--cap`` and ``--variant`` to a command; use
    as ``@config_options`` or, with other defaults, ``@config_options(tabs=3, variant=...)``."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option(
            "--variant", "variant", default=variant, show_default=bool(variant), metavar="FLAGS",
            help="Comma-separated design flags of SPEC §5 (dedupe, keep_verifying, atomic_cache, "
                 "sweeper, tab_crash, shared_pending); empty is the seed design.",
        )(f)
        f = click.option("--cap", type=int, default=None,
                         help="Cache capacity C (default T*K: no eviction).")(f)
        f = click.option("--per-tab", "per_tab", type=int, default=1, show_default=True,
                         help="Messages each tab posts (K).")(f)
        f = click.option("--tabs", type=int, default=tabs, show_default=True,
                         help="Number of tabs (T).")(f)
        return f

    return decorate(func) if func is not None else decorate


def make_config(tabs: int, per_tab: int, cap: int | None, variant: str) -> Config:
    """A validated :class:`Config`, or a click usage error carrying the one-line reason."""
    try:
        return Config.make(tabs=tabs, per_tab=per_tab, cap=cap, variants=variant)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
