"""kvheal's documentation as package data (``kvheal.docs``), so that an installed copy carries it.

``spec.md`` is the specification that every "SPEC §n" in kvheal refers to; `kvheal spec` prints
it. Read a page with :func:`read`:

    >>> from kvheal.docs import read
    >>> read("spec.md").splitlines()[0]
    '# The kvheal specification'
"""

from __future__ import annotations

from importlib.resources import files

__all__ = ["PAGES", "read"]

#: the pages shipped with the package
PAGES: tuple[str, ...] = ("spec.md", "post-mortem.md", "README.md")


def read(page: str) -> str:
    """The text of one of :data:`PAGES` (ValueError for any other name)."""
    if page not in PAGES:
        raise ValueError(f"no page {page!r}; pages: {', '.join(PAGES)}")
    return files(__name__).joinpath(page).read_text(encoding="utf-8")
