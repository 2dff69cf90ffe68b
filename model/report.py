"""`kvheal report`'s assembler: check results in, the report's files out (as strings).

Pure: the caller runs the checker (:func:`record_of` turns a result into a JSON-able record,
which is also what the command caches) and writes the files :func:`assemble` returns. One
document model feeds both ``report.md`` and ``index.html``, so they say the same things; the
HTML is self-contained (inline CSS and SVG, no network).

Contents: the post-mortem's claims with their verdicts for the post-mortem design, the app as
deployed (``as_built``) and its fix (``as_built_fixed``) (:mod:`kvheal.model.claims`, decided
from the records), the design × property matrix, z3's proofs with their SMT-LIB queries (at
the report's size and for every number of tabs), the app as deployed (SPEC §6's designs, with
EveryoneSees), the real system when measured (stress, POST latency, planted bugs), and every
counterexample as a sequence diagram (SVG; with the tab view, what each tab has shown), a
step table (Markdown) and an ITF trace (JSON). :func:`readme_table` renders README's verdict
table from the same records.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kvheal.flags import MODELLED_ONLY, PRESETS

from .claims import (
    CLAIMS,
    CONFIRMED,
    DEPLOYED,
    FIXED,
    MEASURED,
    NOT_APPLICABLE,
    NOT_MODELLED,
    REFRESH,
    REFRESH_CONTROL,
    REFUTED,
    decide,
)
from .config import Config
from .definition import channel
from .itf import dumps as itf_dumps
from .itf import to_itf
from .render import PALETTE, line_chart_svg, sequence_svg, state_table_md, step_table_md, trace_views

#: The designs of README's verdict table, in its order (variant labels).
DESIGNS: tuple[str, ...] = (
    "seed",
    "dedupe",
    "keep_verifying",
    "atomic_cache",
    "sweeper",
    "tab_crash",
    "shared_pending",
    "dedupe,keep_verifying",
    "atomic_cache,dedupe",
    "dedupe,sweeper",
    "dedupe,tab_crash",
    "dedupe,shared_pending",
)
#: The app as deployed (SPEC §6, model-only flags), in the report's order, with their roles:
#: checked by --quick and --full alike (as_built: 3.5 million states at tabs 2, 0.8 GiB; the
#: others under 100,000 states).
AS_BUILT_DESIGNS: dict[str, str] = {
    DEPLOYED: "the app as deployed (preset as_built)",
    FIXED: "the fix (preset as_built_fixed)",
    REFRESH: "as deployed, its cache races fixed: only a reload is at stake",
    REFRESH_CONTROL: "the same without reloads (control)",
}
#: Left out of ``--quick``: 6.2 million states at tabs 2 (over a minute and ~4 GiB).
SLOW: frozenset[str] = frozenset({"shared_pending"})
#: SPEC §7's properties in table order.
PROPERTIES: tuple[str, ...] = (
    "AckedIsStored",
    "CacheFromStore",
    "NoDuplicates",
    "Converges",
    "PendingDrains",
)
GOALS = frozenset({"Converges", "PendingDrains"})
#: The report's properties: SPEC §7's, with EveryoneSees (decided only with the tab view).
REPORT_PROPERTIES: tuple[str, ...] = (*PROPERTIES, "EveryoneSees")


def designs_for(mode: str) -> list[str]:
    """The designs a ``quick`` or ``full`` report checks."""
    return [d for d in DESIGNS if mode == "full" or d not in SLOW] + list(AS_BUILT_DESIGNS)


def properties_of(records: Iterable[Mapping[str, Any]], first: Sequence[str] = PROPERTIES) -> list[str]:
    """The columns for these records: ``first``, then any other property a record decides
    (a newer one of SPEC §7), in the order the records list them: none is left out."""
    out = list(first)
    for rec in records:
        out += [p for p in rec["properties"] if p not in out]
    return out


def tab_view(rec: Mapping[str, Any]) -> bool:
    """Whether a record's design has SPEC §6's tab view (it decides EveryoneSees)."""
    return "EveryoneSees" in rec["properties"]


def design_name(text: str) -> str:
    """A design's name as the report writes it: README's spelling when the flags are one of
    :data:`DESIGNS` (``dedupe,atomic_cache`` -> ``atomic_cache,dedupe``), else the flags in
    SPEC order; ``seed`` for none. :class:`~kvheal.model.config.ConfigError` for unknown flags."""
    flags = config_of(text, 1).variants
    for d in (*DESIGNS, *AS_BUILT_DESIGNS):
        if config_of(d, 1).variants == flags:
            return d
    return config_of(text, 1).variant_label()


def config_of(design: str, tabs: int) -> Config:
    """The configuration of a design label at ``tabs`` (one message per tab, default cap)."""
    return Config.make(tabs=tabs, variants="" if design == "seed" else design)


def _steps_json(trace: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in trace:
        step = {"action": s["action"], "args": {k: int(v) for k, v in dict(s.get("args", {})).items()}}
        if s.get("loop"):
            step["loop"] = True
        out.append(step)
    return out


def record_of(model: Any, result: Any) -> dict[str, Any]:
    """A check result as a JSON-able record: configuration, counts, time, verdicts, traces."""
    cfg = model.config
    return {
        "design": design_name(cfg.variant_label()),
        "tabs": cfg.tabs,
        "per_tab": cfg.per_tab,
        "cap": cfg.cap,
        "states": result.states,
        "transitions": result.transitions,
        "seconds": round(result.seconds, 2),
        "complete": result.complete,
        "method": "explicit",
        "properties": {
            name: {"kind": p.kind, "status": str(p.status), "trace": _steps_json(p.trace)}
            for name, p in result.properties.items()
        },
    }


def all_tabs_record(result: Any) -> dict[str, Any]:
    """z3's verdicts for every number of tabs (:func:`kvheal.model.param.prove_all_tabs`) as a
    JSON-able record: per property its status, method, number of queries and time."""
    return {
        "properties": {
            name: {
                "status": str(p.status),
                "method": p.method,
                "queries": len(p.queries),
                "seconds": round(p.seconds, 2),
            }
            for name, p in result.properties.items()
        },
        "assumptions": list(getattr(result, "assumptions", ())),
    }


def status_of(rec: Mapping[str, Any] | None, prop: str) -> str | None:
    """``holds``/``violated``/``unknown``, ``n/a`` when the design does not decide ``prop``,
    None when the design was not run."""
    if rec is None:
        return None
    p = rec["properties"].get(prop)
    return NOT_APPLICABLE if p is None else p["status"]


def verdict_map(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """``(design, property) -> status`` for the claims ledger."""
    out = {}
    for rec in records:
        for prop in properties_of([rec], REPORT_PROPERTIES):
            out[(rec["design"], prop)] = status_of(rec, prop)
    return out


def slug(design: str, prop: str) -> str:
    """The file stem of a counterexample: ``dedupe+sweeper-Converges``."""
    return f"{design.replace(',', '+')}-{prop}"


# -- README's verdict table ---------------------------------------------------------------------


def readme_table(records: Iterable[Mapping[str, Any]]) -> str:
    """README's "verdicts at tabs 2" table: a row per design in :data:`DESIGNS` order (designs
    not in the records left out); violated with the counterexample's length; the liveness
    verdicts of a design where everything holds in bold; ``n/a`` where a property is not
    decided. Designs with the tab view (SPEC §6) are not in it: README has a section of
    their own."""
    by = {r["design"]: r for r in records if not tab_view(r)}
    lines = ["| design | " + " | ".join(PROPERTIES) + " | states |", "|---" * (len(PROPERTIES) + 2) + "|"]
    for design in [d for d in DESIGNS if d in by] + sorted(set(by) - set(DESIGNS)):
        rec = by[design]
        converges = all(status_of(rec, p) in ("holds", NOT_APPLICABLE) for p in PROPERTIES)
        cells = []
        for prop in PROPERTIES:
            st = status_of(rec, prop)
            if st == "violated":
                cells.append(f"violated ({len(rec['properties'][prop]['trace'])})")
            elif st == "holds" and prop in GOALS and converges:
                cells.append("**holds**")
            else:
                cells.append(st)
        lines.append(f"| {design} | " + " | ".join(cells) + f" | {rec['states']:,} |")
    return "\n".join(lines) + "\n"


def readme_section(readme: str, heading: str = "### The verdicts at tabs 2") -> str:
    """The first Markdown table after ``heading`` in README's text."""
    start = readme.index(heading)
    lines = readme[start:].splitlines()
    table: list[str] = []
    for line in lines[1:]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return "\n".join(table) + "\n"


# -- the document model: blocks rendered to Markdown and to HTML ----------------------------------------
#
# Inline text is a list of pieces: a str, ("b", text), ("code", text), ("a", text, href).
# Blocks: ("h", level, inline, id), ("p", inline), ("table", header, rows of inline cells),
# ("svg", svg text, image path, caption), ("details", summary inline, [blocks]).


def _md_inline(pieces: Sequence[Any]) -> str:
    out = []
    for p in pieces:
        if isinstance(p, str):
            out.append(p.replace("|", "\\|"))
        elif p[0] == "b":
            out.append(f"**{p[1]}**")
        elif p[0] == "code":
            out.append(f"`{p[1]}`")
        elif p[0] == "a" and len(p) > 3:  # a page anchor in HTML; in Markdown p[3] (or plain text)
            out.append(f"[{p[1]}]({p[3]})" if p[3] else p[1])
        elif p[0] == "a":
            out.append(f"[{p[1]}]({p[2]})")
    return "".join(out)


def _html_inline(pieces: Sequence[Any]) -> str:
    out = []
    for p in pieces:
        if isinstance(p, str):
            out.append(html.escape(p))
        elif p[0] == "b":
            out.append(f"<strong>{html.escape(p[1])}</strong>")
        elif p[0] == "code":
            out.append(f"<code>{html.escape(p[1])}</code>")
        elif p[0] == "a":
            out.append(f'<a href="{html.escape(p[2])}">{html.escape(p[1])}</a>')
    return "".join(out)


def to_markdown(blocks: Sequence[Any]) -> str:
    out: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append("#" * b[1] + " " + _md_inline(b[2]))
        elif kind == "p":
            out.append(_md_inline(b[1]))
        elif kind == "table":
            out.append("| " + " | ".join(b[1]) + " |")
            out.append("|" + "---|" * len(b[1]))
            out += ["| " + " | ".join(_md_inline(c) for c in row) + " |" for row in b[2]]
        elif kind == "svg":
            out.append(f"![{b[3]}]({b[2]})")
        elif kind == "md":
            out.append(b[1].rstrip("\n"))
        elif kind == "details":
            out.append(to_markdown(b[2]).rstrip("\n"))
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _md_table_to_html(md: str) -> str:
    """A step table (Markdown from :func:`kvheal.model.render.step_table_md`) as HTML."""
    rows, after = [], []
    for line in md.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip().replace("\\|", "|") for c in line.strip("|").split(" | ")]
            rows.append(cells)
        elif line.strip():
            after.append(line)
    head, body = rows[0], rows[1:]
    out = [
        '<table class="steps"><thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
    ]
    for r in body:
        cls = ' class="loop"' if r[1].startswith("`↻") else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c.strip('`'))}</td>" for c in r) + "</tr>")
    out.append("</tbody></table>")
    out += [f"<p>{html.escape(a)}</p>" for a in after]
    return "\n".join(out)


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1500px;
color:#1b1b1b;padding:0 16px;line-height:1.45}
h1{font-size:26px;margin-bottom:4px}h2{margin-top:34px;border-bottom:2px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:10px 0;font-size:13px}
th,td{border:1px solid #d0d0d0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f6}tr.loop td{background:#fff6d5}
code{background:#f3f3f3;padding:1px 4px;border-radius:3px;font-size:12px}
.holds{color:#1a7f37;font-weight:600}.violated{color:#b00020;font-weight:600}
.cex{overflow-x:auto;border:1px solid #e3e3e3;border-radius:6px;padding:8px;margin:8px 0;background:#fff}
details{margin:10px 0}summary{cursor:pointer;font-weight:600}
.meta{color:#555;font-size:13px}
"""


def to_html(blocks: Sequence[Any], title: str) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
    ]

    def emit(bs: Sequence[Any]) -> None:
        for b in bs:
            kind = b[0]
            if kind == "h":
                ident = f' id="{html.escape(b[3])}"' if len(b) > 3 and b[3] else ""
                out.append(f"<h{b[1]}{ident}>{_html_inline(b[2])}</h{b[1]}>")
            elif kind == "p":
                out.append(f"<p>{_html_inline(b[1])}</p>")
            elif kind == "table":
                out.append(
                    "<table><thead><tr>"
                    + "".join(f"<th>{html.escape(h)}</th>" for h in b[1])
                    + "</tr></thead><tbody>"
                )
                for row in b[2]:
                    out.append(
                        "<tr>" + "".join(f"<td{_cls(c)}>{_html_inline(c)}</td>" for c in row) + "</tr>"
                    )
                out.append("</tbody></table>")
            elif kind == "svg":
                out.append(f'<div class="cex">{b[1]}</div>')
            elif kind == "md":
                out.append(_md_table_to_html(b[1]))
            elif kind == "details":
                out.append(
                    f"<details{' open' if len(b) > 3 and b[3] else ''}><summary>{_html_inline(b[1])}</summary>"
                )
                emit(b[2])
                out.append("</details>")

    emit(blocks)
    # A marker the browser test looks for: the page's script ran (and nothing before it threw).
    out.append("<script>document.documentElement.setAttribute('data-kvheal-report','rendered');</script>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _cls(cell: Sequence[Any]) -> str:
    text = "".join(p if isinstance(p, str) else p[1] for p in cell)
    for word in ("violated", "holds", "refuted", "confirmed"):
        if text.startswith(word):
            return f' class="{"holds" if word in ("holds", "confirmed") else "violated"}"'
    return ""


# -- assembling ----------------------------------------------------------------------------------------


def _cell(rec: Mapping[str, Any] | None, prop: str) -> list[Any]:
    st = status_of(rec, prop)
    if st is None:
        return ["not run"]
    if st == "violated":
        n = len(rec["properties"][prop]["trace"])
        stem = slug(rec["design"], prop)
        return [("a", f"violated ({n})", f"#{stem}", f"cex/{stem}.md")]
    return [st]


def replay_text(rec: Mapping[str, Any] | None, prop: str) -> str:
    """What replaying a counterexample on the real system showed, in a few words ("" if not run)."""
    r = ((rec or {}).get("replay") or {}).get(prop)
    if not r:
        return ""
    if r.get("error"):
        return "replay failed: " + r["error"]
    if r.get("reproduced"):
        return "reproduced on the real system"
    if r.get("diverged"):
        return "the real system could not follow the trace"
    return "not reproduced on the real system"


def z3_record(result: Any) -> dict[str, Any]:
    """z3's verdicts at a fixed size (:func:`kvheal.model.prove.prove`) as a JSON-able record."""
    return {
        name: {"status": str(p.status), "method": p.method, "seconds": round(p.seconds, 2)}
        for name, p in result.properties.items()
    }


def _z3_cell(rec: Mapping[str, Any]) -> str:
    z3 = rec.get("z3")
    if not z3:
        return "—"
    differ = [p for p, v in z3.items() if v["status"] != status_of(rec, p)]
    if differ:
        return "DIFFERS on " + ", ".join(f"{p} (z3 {z3[p]['status']})" for p in differ)
    return f"agrees ({len(z3)} of {len(z3)})"


def modelled_only(design: str) -> list[str]:
    """The flags of ``design`` that only the model has (SPEC §6): the real system cannot
    replay its counterexamples."""
    return sorted(config_of(design, 1).variants & MODELLED_ONLY)


def _not_replayable(design: str) -> str:
    """Why a design's counterexamples cannot be replayed on the real system ('' if they can)."""
    flags = modelled_only(design)
    return "not replayable: " + ", ".join(flags) + " modelled only" if flags else ""


def _replayed(rec: Mapping[str, Any]) -> str:
    """How many of a design's counterexamples the real system reproduced, in a few words."""
    violated = [p for p, v in rec["properties"].items() if v["status"] == "violated"]
    if not violated:
        return "—"
    blocked = _not_replayable(rec["design"])
    if blocked:
        return blocked
    replay = rec.get("replay") or {}
    if not replay:
        return "not replayed"
    done = sum(1 for p in violated if (replay.get(p) or {}).get("reproduced"))
    return f"{done} of {len(violated)} reproduced"


def _replay_cell(rec: Mapping[str, Any], prop: str) -> str:
    r = (rec.get("replay") or {}).get(prop)
    text = replay_text(rec, prop)
    if r and r.get("evidence"):
        text += ": " + r["evidence"]
    return text or _not_replayable(rec["design"]) or "not replayed"


def _claim_cell(dec: Mapping[str, Any], claim: Any, by: Mapping[str, Any] | None = None) -> list[Any]:
    v = dec["verdict"]
    if v == REFUTED:
        pieces: list[Any] = ["refuted: "]
        for i, b in enumerate(dec["by"]):
            if i:
                pieces.append(", ")
            if b["status"] == "violated":
                stem = slug(b["design"], b["property"])
                pieces.append(("a", f"{b['property']} violated", f"#{stem}", f"cex/{stem}.md"))
                seen = replay_text((by or {}).get(b["design"]), b["property"])
                if seen:
                    pieces.append(f" ({seen})")
            else:
                where = (
                    "#as-built"
                    if b["property"] == "EveryoneSees" or b["design"] in AS_BUILT_DESIGNS
                    else "#matrix"
                )
                pieces.append(("a", f"{b['property']} holds", where, ""))
        return pieces
    if v == CONFIRMED:
        return [
            "confirmed: "
            + ", ".join(f"{b['property']} {b['status']}" for b in dec["by"])
            + " (exhaustive at this size)"
        ]
    if v == MEASURED and dec["by"] and claim.beyond:  # the checks hold; the rest is not checked
        return [
            "in part: " + ", ".join(f"{b['property']} {b['status']}" for b in dec["by"]) + "; " + claim.beyond
        ]
    if v == MEASURED:
        return ["measured: " + claim.measured]
    if v == NOT_MODELLED:
        return ["not modelled: " + claim.not_modelled]
    unknown = [b["property"] for b in dec["by"] if b["status"] == "unknown"]
    if unknown:
        return ["unknown (" + ", ".join(unknown) + ": the search stopped at --max-states)"]
    if dec["by"]:
        hint = "; try --full" if dec["design"] in SLOW else ": not checked in this run"
        return ["not run (" + ", ".join(b["property"] for b in dec["by"]) + f"{hint})"]
    return ["not decided here"]


def assemble(
    records: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
    stress: Sequence[Mapping[str, Any]] | None = None,
    latency: Sequence[Mapping[str, Any]] | None = None,
    planted: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """The report's files, ``relative path -> text``: ``report.md``, ``index.html``,
    ``verdicts.json`` (the records without traces, for README's table) and per counterexample
    ``cex/<design>-<property>.svg``, ``.itf.json`` and ``.md``; with ``stress`` (records of
    ``kvheal stress --json`` runs, see :func:`stress_blocks`) the real system's section and its
    charts under ``stress/``; with ``latency`` (:func:`latency_blocks`) the POST latency chart;
    with ``planted`` (:func:`planted_blocks`) the planted bugs the lockstep machine hunted.

    ``meta`` carries ``command``, ``version``, ``tabs`` and ``mode`` (written in the header);
    nothing time-dependent is added here, so the same records give the same files."""
    files: dict[str, str] = {}
    by = {r["design"]: r for r in records}
    from .smtlib import smt2_file

    known = (*DESIGNS, *AS_BUILT_DESIGNS)
    designs = [d for d in known if d in by] + sorted(set(by) - set(known))
    verdicts = verdict_map(records)
    tabs = meta.get("tabs", records[0]["tabs"] if records else 2)
    blocks: list[Any] = [
        ("h", 1, ["kvheal report: does poll-and-heal converge?"], "top"),
        (
            "p",
            [
                f"kvheal {meta.get('version', '?')}, ",
                ("code", meta.get("command", "kvheal report")),
                f"; mode {meta.get('mode', '?')}, tabs {tabs}, one message per tab. "
                "Verdicts are the explicit checker's: every reachable state, liveness under weak fairness "
                "(SPEC §7). Every verdict on this page is computed by this run.",
            ],
        ),
    ]
    # the claims
    blocks.append(("h", 2, ["The post-mortem's claims"], "claims"))
    blocks.append(
        (
            "p",
            [
                "Each claim in the post-mortem's words, decided for the post-mortem design (seed), "
                "for the app as deployed (",
                ("code", DEPLOYED),
                ": SPEC §6's preset, with the tabs' lagging cursor and what each page has shown) "
                "and for its fix (",
                ("code", FIXED),
                ", the smallest change found that makes every property hold); "
                '"true of" lists the designs checked here for which the claim\'s properties hold. '
                "Refuted links to the counterexample; confirmed means every property the claim "
                "needs holds in every reachable state at this size; measured means the model "
                "decides only part of the claim and the rest is a measurement.",
            ],
        )
    )
    rows = []
    for claim in CLAIMS:
        # the refresh probe and its control isolate one claim; they are not candidates
        dec = decide(claim, verdicts, [d for d in designs if d not in (REFRESH, REFRESH_CONTROL)])
        pm = _claim_cell(dec["post_mortem"], claim, by)
        if dec["post_mortem"]["design"] != "seed":
            pm = [*pm, f" (on {dec['post_mortem']['design']})"]
        if "deployed" in dec:
            dep = _claim_cell(dec["deployed"], claim, by)
            if dec["deployed"]["design"] != DEPLOYED:
                dep.append(f" (on {dec['deployed']['design']})")
            if "control" in dec:
                dep += [f"; the same without {claim.needs} (control): "]
                dep += _claim_cell(dec["control"], claim, by)
            fixed = _claim_cell(dec["fixed"], claim, by)
        else:
            dep = fixed = ["(about the fix, not the app)"]
        true_of = (
            ", ".join(dec["true_of"])
            if dec["true_of"]
            else ("none checked" if claim.checks and "deployed" in dec else "")
        )
        if dec.get("in_part"):
            true_of = "in part (what the model checks holds): " + ", ".join(dec["in_part"])
        how = []
        if claim.command:
            how.append(("code", claim.command))
        if claim.note:
            how.append((". " if how else "") + claim.note)
        if claim.measured and dec["post_mortem"]["verdict"] != MEASURED:
            how.append(" Measured: " + claim.measured + ".")
        if claim.measured and stress:
            how.append(" Measured by this report: see ")
            how.append(("a", "the real system", "#stress", "#the-real-system-under-stress"))
            how.append(".")
        pm_design = dec["post_mortem"]["design"]
        for check in claim.checks:
            pf = (by.get(pm_design, {}).get("all_tabs") or {}).get("properties", {}).get(check.prop)
            if pf is not None:
                how.append(f" z3: {check.prop} {pf['status']} for every number of tabs ({pf['method']}).")
        if claim.not_modelled and dec["post_mortem"]["verdict"] != NOT_MODELLED:
            how.append(" Not modelled: " + claim.not_modelled + ".")
        rows.append([[claim.quote], pm, dep, fixed, [true_of], how])
    blocks.append(
        (
            "table",
            [
                "claim",
                "post-mortem design",
                f"as deployed ({DEPLOYED})",
                f"the fix ({FIXED})",
                "true of",
                "how it is decided",
            ],
            rows,
        )
    )
    # the matrix
    blocks.append(("h", 2, [f"Design × property (tabs {tabs})"], "matrix"))
    mrows = []
    plain = [d for d in designs if not tab_view(by[d])]
    built = [d for d in designs if tab_view(by[d])]
    columns = properties_of([by[d] for d in plain])
    for d in plain:
        rec = by[d]
        mrows.append(
            [
                [d],
                *[_cell(rec, p) for p in columns],
                [f"{rec['states']:,}"],
                [f"{rec['transitions']:,}"],
                [f"{rec['seconds']:.2f} s"],
                ["explicit" + ("" if rec["complete"] else " (incomplete)")],
                [_z3_cell(rec)],
            ]
        )
    skipped = [d for d in meta.get("skipped", ())]
    z3rows, assumptions = [], {}
    for d in designs:
        if not by[d].get("all_tabs"):
            continue
        proofs = by[d]["all_tabs"]["properties"]
        assumptions[d] = by[d]["all_tabs"]["assumptions"]
        for prop in properties_of([by[d]], REPORT_PROPERTIES):
            if prop not in by[d]["properties"]:
                continue  # not decided for this design at any size (n/a)
            pf = proofs.get(prop)
            if pf is None:
                z3rows.append([[d], [prop], ["not proved"], ["no all-tabs argument for this property"], [""]])
            else:
                z3rows.append([[d], [prop], [pf["status"]], [pf["method"]], [str(pf["queries"])]])
    blocks.append(
        (
            "table",
            ["design", *columns, "states", "transitions", "time", "method", f"z3 at tabs {tabs}"],
            mrows,
        )
    )
    z3_fixed = [
        [[d], [prop], [pf["status"]], [pf["method"]], [f"{pf['seconds']:.2f} s"]]
        for d in designs
        for prop, pf in (by[d].get("z3") or {}).items()
    ]
    if z3_fixed:
        blocks.append(
            (
                "p",
                [
                    "z3 at the same size (",
                    ("code", f"kvheal prove --tabs {tabs}"),
                    "), for the designs where "
                    "every property holds: induction for the invariants, ranking arguments under weak fairness for "
                    "the goals. Where both engines decide, they must agree; the column above says whether they do.",
                ],
            )
        )
        blocks.append(("table", ["design", "property", "z3 verdict", "method", "time"], z3_fixed))
        smt_fixed = _smt_rows(
            [d for d in designs if by[d].get("z3_queries")],
            lambda d: by[d]["z3_queries"],
            lambda d: f"smt/tabs-{tabs}/{d.replace(',', '+')}/",
            lambda d, q: smt2_file(q, d, f"tabs {tabs} (kvheal prove --tabs {tabs} --variant {d})"),
            files,
        )
        if smt_fixed:
            blocks.append(
                (
                    "p",
                    [
                        f"Every query z3 answered for these proofs at tabs {tabs} is beside this report as "
                        "an SMT-LIB 2 file with the answer a re-run must give in a comment (",
                        ("code", "; expect: unsat"),
                        "); where that is not the answer the argument asked for (a plain induction step "
                        "that was then strengthened, a candidate invariant that was dropped) the file "
                        "says so. ",
                        ("code", "kvheal recheck DIR"),
                        " (or any SMT-LIB solver) re-runs them. The premises column is z3 asked "
                        "again without the query's last assertion: a vacuous query holds because its "
                        "hypotheses cannot hold together. Most of those here are the per-step checks of "
                        "a ranking premise (helpful-stays, helper-stays) for a step that cannot keep the "
                        "rank in that situation at all, which is one way for the premise to hold.",
                    ],
                )
            )
            blocks.append(("table", SMT_HEAD, smt_fixed))
    if skipped:
        blocks.append(("p", ["Not run in this mode: " + ", ".join(skipped) + " (use --full)."]))
    if built:
        blocks += as_built_blocks([by[d] for d in built], tabs)
    if z3rows:
        blocks.append(("h", 2, ["For every number of tabs (z3)"], "all-tabs"))
        blocks.append(
            (
                "p",
                [
                    "The parameterized proofs of ",
                    ("code", "kvheal prove --all-tabs"),
                    " (tabs and messages as uninterpreted sorts). Every property the explicit "
                    "checker decides is listed; one without an all-tabs argument says so.",
                ],
            )
        )
        blocks.append(("table", ["design", "property", "verdict", "method", "queries"], z3rows))
        for d, items in assumptions.items():
            blocks.append(("p", [("b", f"Assumed for {d}:"), " " + " ".join(items)]))
        smt_rows = _smt_rows(
            [d for d in designs if (by[d].get("all_tabs") or {}).get("queries")],
            lambda d: by[d]["all_tabs"]["queries"],
            lambda d: f"smt/{d.replace(',', '+')}/",
            lambda d, q: smt2_file(q, d),
            files,
        )
        if smt_rows:
            blocks.append(
                (
                    "p",
                    [
                        "Every query z3 answered for these proofs is beside this report as an SMT-LIB 2 "
                        "file, with the answer the argument needs in a comment (",
                        ("code", "; expect: unsat"),
                        "); ",
                        ("code", "kvheal recheck DIR"),
                        " (or any SMT-LIB solver) re-runs them.",
                    ],
                )
            )
            blocks.append(
                (
                    "p",
                    [
                        "Vacuity: for each unsatisfiable query, z3 is asked again without its last "
                        "fact (the negated conclusion). If the remaining premises are unsatisfiable too, "
                        "the query holds only because its hypotheses cannot hold together (typically a "
                        "step that cannot happen in that phase of the argument); such queries are named "
                        "so a reader can judge them."
                    ],
                )
            )
            blocks.append(("table", SMT_HEAD, smt_rows))
    # the counterexamples
    if stress:
        blocks += stress_blocks(stress, files)
    if latency:
        blocks += latency_blocks(latency, files)
    if planted:
        blocks += planted_blocks(planted)
    blocks.append(("h", 2, ["Counterexamples"], "counterexamples"))
    blocks.append(
        (
            "p",
            [
                "Each as a sequence diagram (time runs down; a lane per tab, worker request and KV "
                "key; one colour per message; a lasso's loop shaded and bracketed), a step table and "
                "an ITF trace (the JSON trace format Apalache and Quint read)."
            ],
        )
    )
    index_rows = []
    for d in designs:
        rec = by[d]
        model = None
        for prop in properties_of([rec], REPORT_PROPERTIES):
            p = rec["properties"].get(prop)
            if not p or p["status"] != "violated":
                continue
            if model is None:
                from .core import KVHealModel

                model = KVHealModel(
                    Config.make(
                        tabs=rec["tabs"],
                        per_tab=rec["per_tab"],
                        cap=rec["cap"],
                        variants="" if d == "seed" else d,
                    )
                )
            trace = p["trace"]
            views = trace_views(model, trace)
            stem = slug(d, prop)
            kind = "lasso" if any(s.get("loop") for s in trace) else "path"
            title = f"{d}: {prop} violated ({kind} of {len(trace)} steps, tabs {rec['tabs']})"
            cfg = model.config
            svg = sequence_svg(
                trace,
                views,
                title=title,
                violated=prop,
                ident=stem,
                dedupe="dedupe" in cfg.variants,
                channels=[channel(cfg, t) for t in range(cfg.tabs)],
            )
            table = step_table_md(trace, views)
            files[f"cex/{stem}.svg"] = svg
            files[f"cex/{stem}.md"] = (
                f"# {title}\n\n![sequence diagram]({stem}.svg)\n\n{table}\n"
                f"## The full state at each step\n\n{state_table_md(trace, views)}"
            )
            files[f"cex/{stem}.itf.json"] = itf_dumps(
                to_itf(
                    trace,
                    views,
                    {
                        "design": d,
                        "property": prop,
                        "tabs": rec["tabs"],
                        "per_tab": rec["per_tab"],
                        "cap": rec["cap"],
                        "kvheal": meta.get("version", "?"),
                    },
                )
            )
            index_rows.append(
                [
                    [("a", f"{d}: {prop}", f"#{stem}", f"cex/{stem}.md")],
                    [kind],
                    [str(len(trace))],
                    [
                        ("a", "SVG", f"cex/{stem}.svg"),
                        " · ",
                        ("a", "steps", f"cex/{stem}.md"),
                        " · ",
                        ("a", "ITF", f"cex/{stem}.itf.json"),
                    ],
                    [_replay_cell(rec, prop)],
                ]
            )
            blocks.append(("h", 3, [title], stem))
            blocks.append(("svg", svg, f"cex/{stem}.svg", f"{d}: {prop}"))
            blocks.append(("details", ["step table"], [("md", table)]))
            blocks.append(
                (
                    "p",
                    [
                        "Files: ",
                        ("a", "SVG", f"cex/{stem}.svg"),
                        ", ",
                        ("a", "step table", f"cex/{stem}.md"),
                        ", ",
                        ("a", "ITF trace", f"cex/{stem}.itf.json"),
                        ".",
                    ],
                )
            )
    if index_rows:
        at = next(i for i, b in enumerate(blocks) if b[0] == "h" and b[3] == "counterexamples") + 2
        blocks.insert(
            at, ("table", ["counterexample", "kind", "steps", "files", "on the real system"], index_rows)
        )
    title = "kvheal report"
    files["report.md"] = to_markdown(blocks)
    files["index.html"] = to_html(blocks, title)
    slim = [
        {k: v for k, v in r.items() if k not in ("properties", "all_tabs", "z3_queries")}
        | {
            "properties": {
                n: {"status": p["status"], "length": len(p["trace"]) or None}
                for n, p in r["properties"].items()
            }
        }
        | (
            {"all_tabs": {n: p["status"] for n, p in r["all_tabs"]["properties"].items()}}
            if r.get("all_tabs")
            else {}
        )
        for r in records
    ]
    files["verdicts.json"] = json.dumps({"meta": dict(meta), "records": slim}, indent=1) + "\n"
    return files


def as_built_blocks(records: Sequence[Mapping[str, Any]], tabs: int) -> list[Any]:
    """The section on the app as deployed: the designs with SPEC §6's tab view, their role,
    their verdicts on every property (EveryoneSees included) and what was not run on them."""
    rows = []
    columns = properties_of(records, REPORT_PROPERTIES)
    for rec in records:
        d = rec["design"]
        rows.append(
            [
                [d],
                [AS_BUILT_DESIGNS.get(d, "")],
                *[_cell(rec, p) for p in columns],
                [f"{rec['states']:,}"],
                [f"{rec['transitions']:,}"],
                [f"{rec['seconds']:.2f} s"],
                ["explicit" + ("" if rec["complete"] else " (incomplete)")],
                [_z3_cell(rec)],
                [_replayed(rec)],
            ]
        )
    return [
        ("h", 2, [f"The app as deployed (tabs {tabs})"], "as-built"),
        (
            "p",
            [
                "SPEC §6's model of the app as it ran: a clock and timestamps, each tab's cursor "
                "lagging its clock, the set of messages each page has shown, what counts as found "
                "(the poll's answer or the page-load list), one reload per tab and the faults SPEC "
                "§6 describes (",
                ("code", f"kvheal check --tabs {tabs} --variant as_built"),
                "; the preset is ",
                ("code", ",".join(sorted(PRESETS[DEPLOYED]))),
                "). EveryoneSees: every live tab is eventually shown every acknowledged message. "
                "The diagrams of these counterexamples have a column per tab with what its page has "
                "shown after each step.",
            ],
        ),
        (
            "table",
            ["design", "role", *columns, "states", "transitions", "time", "method", "z3", "real system"],
            rows,
        ),
        (
            "p",
            [
                "Left out: the shared pending list (",
                ("code", "shared_pending"),
                ") with the tab view passes the ten-minute budget at tabs 2, so the presets leave it "
                "out; SPEC §6 records that at one tab with two messages as_built,shared_pending is "
                "violated like as_built and as_built_fixed,shared_pending holds. z3 decides every "
                "design here whose properties all hold, at this size (column z3: the strengthening "
                "for the fix and the shown ranking, SPEC §6)"
                + (
                    ", and the fix for every number of tabs too (below)"
                    if any(r.get("all_tabs") for r in records if r["design"] == FIXED)
                    else ", not yet for every number of tabs"
                )
                + ". "
                "Counterexamples are replayed on the real system where the worker and the client "
                "have every flag of the design (column real system)"
                + (
                    "; a design with a flag the real system lacks ("
                    + ", ".join(sorted(MODELLED_ONLY))
                    + ") is decided by the model alone."
                    if MODELLED_ONLY
                    else "; the real system has every flag."
                ),
            ],
        ),
    ]


SMT_HEAD = ["design", "queries", "answered as the argument needs", "premises", "files"]


def _vacuous_text(names: Sequence[str], most: int = 6) -> str:
    """The vacuous queries by name, or by family when there are many
    (``helper-helps-PollRead(t=0)`` is of the family ``helper-helps``).

    >>> _vacuous_text(["helper-exists", "helper-helps-PollRead(t=0)", "helper-helps-HealKey(m=1)"], most=2)
    '; vacuous: helper-exists (1), helper-helps (2)'
    """
    if not names:
        return ""
    if len(names) <= most:
        return "; vacuous: " + ", ".join(names)
    families: dict[str, int] = {}
    for n in names:
        m = re.match(r"[a-z]+(?:-[a-z]+)*", n)
        key = m.group(0) if m else n
        families[key] = families.get(key, 0) + 1
    return "; vacuous: " + ", ".join(f"{k} ({v})" for k, v in families.items())


def _smt_rows(designs, queries_of, folder_of, text_of, files: dict[str, str]) -> list[Any]:
    """Write each design's queries as ``<folder>NNN-<name>.smt2`` into ``files``; a table row
    per design: how many, how many z3 answered as the argument needed, the vacuity checks."""
    rows = []
    for d in designs:
        queries = queries_of(d)
        folder = folder_of(d)
        for i, q in enumerate(queries):
            name = re.sub(r"[^\w.-]+", "_", q["name"]).strip("_") or "query"
            files[f"{folder}{i + 1:03d}-{name}.smt2"] = text_of(d, q)
        agree = sum(q["answer"] == q["expect"] for q in queries)
        failed = [q["name"] for q in queries if q["answer"] != q["expect"]]
        checked = [q for q in queries if q.get("premises")]
        vacuous = [q["name"] for q in checked if q["premises"] == "unsat"]
        rows.append(
            [
                [d],
                [str(len(queries))],
                [f"{agree} of {len(queries)}" + (f" (not: {', '.join(failed)})" if failed else "")],
                [f"{len(checked) - len(vacuous)} of {len(checked)} not vacuous" + _vacuous_text(vacuous)],
                [("a", folder, folder)],
            ]
        )
    return rows


def readme_table_from_verdicts(data: Mapping[str, Any]) -> str:
    """README's table from a ``verdicts.json`` (lengths instead of traces)."""
    records = []
    for r in data["records"]:
        props = {
            n: {"status": p["status"], "trace": [None] * (p["length"] or 0)}
            for n, p in r["properties"].items()
        }
        records.append({**r, "properties": props})
    return readme_table(records)


# -- the real system ------------------------------------------------------------------------------------


def latency_blocks(latency: Sequence[Mapping[str, Any]], files: dict[str, str]) -> list[Any]:
    """POST latency of the real worker (records of :func:`kvheal.latency.measure`:
    ``{"design", "tabs", "rounds", "posts", "errors", "p50_ms", "p99_ms", ...}`` or with
    ``"error"``): a chart of the median and the 99th percentile against the number of tabs
    posting at once, one colour per design, written to ``stress/post-latency.svg``, and a table."""
    series: dict[str, list[tuple[float, float]]] = {}
    colours: dict[str, str] = {}
    dashed = []
    rows = []
    designs = list(dict.fromkeys(r["design"] for r in latency))
    for r in latency:
        if "p50_ms" not in r:
            rows.append([[r["design"]], [str(r["tabs"])], [f"failed: {r.get('error', '?')}"], *[[""]] * 5])
            continue
        c = PALETTE[designs.index(r["design"]) % len(PALETTE)]
        for label, key in (("median", "p50_ms"), ("p99", "p99_ms")):
            name = f"{r['design']} {label}"
            series.setdefault(name, []).append((r["tabs"], r[key]))
            colours[name] = c
            if label == "p99" and name not in dashed:
                dashed.append(name)
        rows.append(
            [
                [r["design"]],
                [str(r["tabs"])],
                [f"{r['posts']} ({r['rounds']} bursts)" + (f", {r['errors']} errors" if r["errors"] else "")],
                [f"{r['p50_ms']:.1f}"],
                [f"{r['p90_ms']:.1f}"],
                [f"{r['p99_ms']:.1f}"],
                [f"{r['max_ms']:.1f}"],
                [f"{r['mean_ms']:.1f}"],
            ]
        )
    blocks: list[Any] = [
        ("h", 3, ["POST latency"], "post-latency"),
        (
            "p",
            [
                "Each POST /api/comments timed from the request to its answer, with every tab "
                "posting at the same instant, burst after burst (the real worker over SQLite, "
                f"{latency[0].get('workers', '?')} processes, each tab on its own connection; the "
                "load generator shares the machine, so these are this machine's figures under this "
                "load). Solid: the median; dashed: the 99th percentile.",
            ],
        ),
    ]
    if series:
        files["stress/post-latency.svg"] = line_chart_svg(
            "POST latency (median solid, 99th percentile dashed)",
            "tabs posting at once",
            "milliseconds",
            series,
            colours=colours,
            dashed=dashed,
            width=680,
        )
        blocks.append(("svg", files["stress/post-latency.svg"], "stress/post-latency.svg", "POST latency"))
    blocks.append(
        ("table", ["design", "tabs", "posts", "median ms", "p90 ms", "p99 ms", "max ms", "mean ms"], rows)
    )
    files["stress/latency.json"] = json.dumps(list(latency), indent=1) + "\n"
    return blocks


def planted_blocks(planted: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Conformance: each planted bug (records of :func:`kvheal.planted.hunt`), whether the
    lockstep machine found it, after how many examples, and the first difference it saw."""
    rows = []
    for r in planted:
        diff = r.get("first_difference") or {}
        rows.append(
            [
                [("code", r["fault"])],
                [r["doc"]],
                [f"{r['design']}, tabs {r['tabs']}"],
                [f"found in example {r['examples']}" if r["found"] else "NOT FOUND"],
                [f"{diff['field']}: model {diff['model']}, implementation {diff['impl']}" if diff else ""],
                [r.get("reason", "")],
                [f"{r['seconds']:.1f} s"],
            ]
        )
    found = sum(bool(r["found"]) for r in planted)
    return [
        ("h", 3, ["Planted bugs"], "planted-bugs"),
        (
            "p",
            [
                "Each planted bug (",
                ("code", "kvheal.conformance.faults"),
                ": a deliberate fault in a subclass of the real worker, client or backend) run "
                "against the model in the lockstep machine under the conformance tests' ci "
                f"profile (fixed seed, at most 50 examples of 30 steps): {found} of {len(planted)} "
                "found. The designs without the faults pass the same machine "
                "(tests/conformance/test_lockstep.py).",
            ],
        ),
        (
            "table",
            ["planted bug", "what it does", "design", "found", "first difference", "why", "time"],
            rows,
        ),
    ]


def stress_blocks(stress: Sequence[Mapping[str, Any]], files: dict[str, str]) -> list[Any]:
    """The real system's section: ``kvheal stress`` per design and number of tabs (records
    ``{"design", "tabs", "runs", "command", "summary"}`` or ``"error"``), two charts written
    into ``files`` (``stress/missing.svg``, ``stress/polls.svg``) and a table."""
    ok = [r for r in stress if r.get("summary")]
    missing: dict[str, list[tuple[float, float]]] = {}
    polls: dict[str, list[tuple[float, float]]] = {}
    rows = []
    for r in stress:
        sm = r.get("summary")
        if not sm:
            rows.append(
                [
                    [r["design"]],
                    [str(r["tabs"])],
                    [f"failed: {r.get('error', '?')}"],
                    *[[""]] * 6,
                    [("code", r["command"])],
                ]
            )
            continue
        acked = sm["acked"] or 1
        missing.setdefault(r["design"], []).append((r["tabs"], sm["missing_after_post"] / acked))
        polls.setdefault(r["design"], []).append((r["tabs"], float(sm.get("converge_polls_max") or 0)))
        rows.append(
            [
                [r["design"]],
                [str(r["tabs"])],
                [f"{sm['runs']} runs, {sm['acked']} acked"],
                [f"{sm['missing_after_post']} ({sm['missing_after_post'] / acked:.0%})"],
                [str(sm["missing_after_heal"])],
                [str(sm.get("lost", 0))],
                [str(sm.get("duplicates", 0))],
                [f"{sm.get('converged_runs', 0)} of {sm['runs']}; polls ≤ {sm.get('converge_polls_max')}"],
                [str(sm.get("heals_sent", 0))],
                [("code", r["command"])],
            ]
        )
    blocks: list[Any] = [
        ("h", 2, ["The real system under stress"], "stress"),
        (
            "p",
            [
                "The implementation (",
                ("code", "kvheal serve"),
                ": the Starlette worker over SQLite with "
                "several processes, and real polling and healing clients) raced by ",
                ("code", "kvheal stress"),
                ": every tab posts at the same instant, then polls and heals. Measured by this run; "
                "these are figures, not proofs.",
            ],
        ),
    ]
    if ok:
        files["stress/missing.svg"] = line_chart_svg(
            "Acknowledged messages missing right after posting",
            "concurrent tabs",
            "share of acknowledged messages",
            missing,
            y_max=1.0,
        )
        files["stress/polls.svg"] = line_chart_svg(
            "Polls until every message is in the cache (worst run)", "concurrent tabs", "polls", polls
        )
        blocks.append(
            ("svg", files["stress/missing.svg"], "stress/missing.svg", "missing right after posting")
        )
        blocks.append(("svg", files["stress/polls.svg"], "stress/polls.svg", "polls to converge"))
    blocks.append(
        (
            "table",
            [
                "design",
                "tabs",
                "posts",
                "missing after posting",
                "missing after healing",
                "lost",
                "duplicates",
                "converged",
                "heals sent",
                "command",
            ],
            rows,
        )
    )
    files["stress/stress.json"] = json.dumps(list(stress), indent=1) + "\n"
    return blocks
