"""`kvheal spec [SECTION]`: print the specification, or one of its sections.

The specification (`docs/spec.md`, installed as :mod:`kvheal.docs`) is split at its level-2
headings ``## §n Title``; "SPEC §n" anywhere in kvheal means section ``n``. A section is chosen
by number (``4``, ``§4``) or by a word of its title (``actions``, ``as-built``):

    >>> spec = parse(read_spec())
    >>> [s.number for s in spec.sections]
    [1, 2, 3, 4, 5, 6, 7, 8, 9]
    >>> find(spec, "§4").title
    'Actions'
    >>> find(spec, "design").number
    5
    >>> find(spec, "4").text.startswith("## §4 Actions")
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import click

__all__ = ["Section", "Spec", "HEADING", "ALIASES", "read_spec", "parse", "find", "spec"]

#: a section heading: ``## §4 Actions``
HEADING = re.compile(r"^## §(\d+) (.+?)\s*$")
#: names that are no word of a title
ALIASES = {"cli": "command-line", "variants": "design flags", "flag": "flags"}


@dataclass(frozen=True, slots=True)
class Section:
    """One numbered section: its number, heading title, and text from its heading on."""

    number: int
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class Spec:
    """The whole text, the preamble before §1, and the numbered sections in order."""

    text: str
    preamble: str
    sections: tuple[Section, ...]


def read_spec() -> str:
    """The installed specification's Markdown."""
    from kvheal.docs import read

    return read("spec.md")


def parse(text: str) -> Spec:
    """Split ``text`` at its ``## §n Title`` headings; a section ends where the next level-2
    heading (numbered or not) begins."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("## ")]
    sections = []
    for k, i in enumerate(starts):
        match = HEADING.match(lines[i].rstrip("\n"))
        if match is None:
            continue
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        body = "".join(lines[i:end]).rstrip() + "\n"
        sections.append(Section(int(match.group(1)), match.group(2), body))
    preamble = "".join(lines[: starts[0]] if starts else lines)
    return Spec(text, preamble, tuple(sections))


def find(spec: Spec, query: str) -> Section:
    """The section a query names: its number (``4`` or ``§4``), or a word or phrase of exactly
    one section's title (case-insensitive). LookupError, with a one-line reason, otherwise."""
    q = query.strip().lower().removeprefix("§").strip()
    q = ALIASES.get(q, q)
    if q.isdigit():
        for section in spec.sections:
            if section.number == int(q):
                return section
    elif q:
        hits = [s for s in spec.sections if _matches(q, s.title)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            names = ", ".join(f"§{s.number} {s.title}" for s in hits)
            raise LookupError(f"section {query!r} is ambiguous: {names}")
    known = "; ".join(f"{s.number} {s.title}" for s in spec.sections)
    raise LookupError(f"no section {query!r} in the specification; sections: {known}")


def _matches(query: str, title: str) -> bool:
    title = title.lower()
    if query in title.split() or query == title:
        return True
    # a prefix of a word, or a phrase of whole-word prefixes ("command line", "as-built")
    return re.search(r"(?<![\w-])" + re.escape(query), title) is not None


@click.command(name="spec")
@click.argument("section", required=False)
def spec(section: str | None) -> None:
    """Print the specification (what "SPEC §n" refers to), or one SECTION of it.

    SECTION is a number (4, §4) or a word of a title (actions, flags, properties, cli).
    An unknown section is a usage error (exit 2).
    """
    text = read_spec()
    if section is None:
        click.echo(text, nl=False)
        return
    try:
        found = find(parse(text), section)
    except LookupError as e:
        raise click.UsageError(str(e)) from None
    click.echo(found.text, nl=False)
