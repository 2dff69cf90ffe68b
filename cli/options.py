"""Options shared by the commands that build a model configuration (check, bench, prove),
and the loader of a user's design (``--design path/to/module.py:NAME``)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from kvheal.model import Config, ConfigError

_DESIGN_KEY = "kvheal.design"


def load_design(spec: str) -> Any:
    """The :class:`~kvheal.model.dsl.Definition` named by ``path/to/module.py:NAME`` (NAME
    defaults to ``DESIGN``); :class:`ConfigError` with one line if it cannot be had."""
    from kvheal.model.dsl import Definition

    path, sep, name = spec.rpartition(":")
    if not sep or not path:
        path, name = spec, "DESIGN"
    file = Path(path)
    if file.suffix != ".py":
        raise ConfigError(f"--design wants path/to/module.py:NAME, got {spec!r}")
    if not file.is_file():
        raise ConfigError(f"--design: no such file {path}")
    mod_name = f"kvheal_user_design_{abs(hash(str(file.resolve())))}"
    try:
        loader = importlib.util.spec_from_file_location(mod_name, file)
        module = importlib.util.module_from_spec(loader)
        sys.modules[mod_name] = module
        loader.loader.exec_module(module)
    except Exception as e:  # a user's module may fail in any way: one line, not a traceback
        raise ConfigError(f"--design: cannot load {path}: {type(e).__name__}: {e}") from None
    design = getattr(module, name, None)
    if not isinstance(design, Definition):
        raise ConfigError(f"--design: {path} has no Definition named {name!r}")
    return design


def remember_design(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        try:
            ctx.meta[_DESIGN_KEY] = load_design(value)
        except ConfigError as e:
            raise click.UsageError(str(e)) from None


def config_options(func: Callable[..., Any] | None = None, *, tabs: int = 2, variant: str = "") -> Any:
    """Add SPEC §9's ``--tabs``, ``--per-tab``, ``--cap`` and ``--variant`` to a command; use
    as ``@config_options`` or, with other defaults, ``@config_options(tabs=3, variant=...)``."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option(
            "--variant",
            "variant",
            default=variant,
            show_default=bool(variant),
            metavar="FLAGS",
            help="Comma-separated design flags of SPEC §5 (dedupe, keep_verifying, atomic_cache, "
            "sweeper, tab_crash, shared_pending); empty is the seed design.",
        )(f)
        f = click.option(
            "--design",
            default=None,
            metavar="FILE.py:NAME",
            expose_value=False,
            callback=remember_design,
            is_eager=True,
            help="Check a design of your own: a Definition in a Python file "
            "(see docs/designs.md); --variant then names its flags.",
        )(f)
        f = click.option(
            "--cap",
            type=int,
            default=None,
            help="Cache capacity C (default M: T*K, plus one with bot_replies; no eviction).",
        )(f)
        f = click.option(
            "--per-tab",
            "per_tab",
            type=int,
            default=1,
            show_default=True,
            help="Messages each tab posts (K).",
        )(f)
        f = click.option("--tabs", type=int, default=tabs, show_default=True, help="Number of tabs (T).")(f)
        return f

    return decorate(func) if func is not None else decorate


def current_design() -> Any:
    """The design ``--design`` loaded for the running command, or None (kvheal's own)."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_DESIGN_KEY) if ctx is not None else None


def make_config(tabs: int, per_tab: int, cap: int | None, variant: str) -> Config:
    """A validated :class:`Config` (for the ``--design`` given, if any), or a click usage
    error carrying the one-line reason."""
    try:
        return Config.make(tabs=tabs, per_tab=per_tab, cap=cap, variants=variant, design=current_design())
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
