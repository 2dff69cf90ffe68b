"""`kvheal export --promela`: the model as a Promela program, for SPIN (kvheal.model.promela)."""
from __future__ import annotations

import sys

import click

from .options import config_options, current_design, make_config


@click.command()
@config_options
@click.option("--promela", is_flag=True,
              help="Write Promela (the one format today): one d_step per action instance, so SPIN "
                   "stores exactly the model's reachable states, plus one (the table prelude).")
@click.option("--no-invariants", is_flag=True,
              help="Leave out the asserts of SPEC §7's invariants (state counts are the same).")
@click.option("-o", "--output", "output", default=None, metavar="FILE",
              help="Write to FILE instead of standard output.")
def export(tabs: int, per_tab: int, cap: int | None, variant: str, promela: bool,
           no_invariants: bool, output: str | None) -> int:
    """Write the model of one configuration for another tool.

    SPIN: spin -a -o2 FILE && gcc -O2 -DSAFETY -DNOREDUCE -o pan pan.c && ./pan -m100000 -c0;
    pan's "states, stored" is kvheal check's state count plus one (the state before the
    prelude that fills the cache tables), its transitions kvheal check's plus two.
    """
    if not promela:
        raise click.UsageError("choose a format: --promela")
    from kvheal.model.definition import KVHEAL
    from kvheal.model.dsl import DefinitionError
    from kvheal.model.promela import promela as to_promela

    cfg = make_config(tabs, per_tab, cap, variant)
    try:
        text = to_promela(current_design() or KVHEAL, cfg, invariants=not no_invariants)
    except DefinitionError as e:
        raise click.UsageError(f"cannot export this design: {e}") from None
    if output is None or output == "-":
        sys.stdout.write(text)
        return 0
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise click.UsageError(f"cannot write {output}: {e.strerror}") from None
    return 0
