"""The specification under docs/: every "SPEC §n" resolves to a heading, nothing points outside
the repository, and `kvheal spec` serves the installed copy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kvheal.docs import read
from kvheal.spec_cmd import find, parse

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILE = ROOT / "docs" / "spec.md"

#: "SPEC §4", "SPEC §3-5", "SPEC §1 and §8", "SPEC §5, §7", "SPEC §4's" (and the file name form)
_NUM = r"§\s?\d+(?:\s?[-–]\s?§?\s?\d+)?"
SPEC_REF = re.compile(r"\bSPEC(?:\.md)?(?:'s)?\s*(" + _NUM + r"(?:\s*(?:,|and|or)\s*" + _NUM + r")*)")
#: inside docs/*.md every § is a section of spec.md
BARE_REF = re.compile(_NUM)

# Paths outside the repository that no tracked file may name (split so this file does not).
FORBIDDEN = ("../" + "shared", "shared/" + "SPEC", "SEED" + "-NOTES", "SPEC" + ".md")
#: (path, forbidden string) pairs tolerated while a rewrite is pending; none is left.
TOLERATED: set[tuple[str, str]] = set()


def sections_of(refs: str) -> list[int]:
    """Section numbers of one reference's §-list: "§3-5 and §8" -> [3, 4, 5, 8]."""
    out: list[int] = []
    for m in re.finditer(r"§\s?(\d+)(?:\s?[-–]\s?§?\s?(\d+))?", refs):
        low, high = int(m.group(1)), int(m.group(2) or m.group(1))
        assert low <= high, f"backwards range in {refs!r}"
        out.extend(range(low, high + 1))
    return out


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.stdout.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None


def all_references() -> list[tuple[str, int, str, list[int]]]:
    """(path, line, matched text, sections) of every SPEC reference in the tracked files, plus
    every § reference inside docs/*.md."""
    refs = []
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        rel = path.relative_to(ROOT).as_posix()
        pattern = BARE_REF if rel.startswith("docs/") and rel.endswith(".md") else SPEC_REF
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            refs.append((rel, line, m.group(0), sections_of(m.group(0))))
    return refs


def spec_numbers() -> set[int]:
    return {s.number for s in parse(SPEC_FILE.read_text(encoding="utf-8")).sections}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("SPEC §4", [4]),
        ("the SPEC §3-5 model", [3, 4, 5]),
        ("SPEC §1 and §8, ", [1, 8]),
        ("SPEC §5, §7 flags", [5, 7]),
        ("SPEC §4's names", [4]),
        ("SPEC" + ".md §3-5 as", [3, 4, 5]),
        ("SPEC §2-7, then §9", [2, 3, 4, 5, 6, 7]),
        ("SPEC §9, 2 tabs", [9]),
    ],
)
def test_reference_pattern(text, expected):
    m = SPEC_REF.search(text)
    assert m is not None
    assert sections_of(m.group(1)) == expected


def test_spec_headings_are_sections_1_to_9_in_order():
    spec = parse(SPEC_FILE.read_text(encoding="utf-8"))
    assert [s.number for s in spec.sections] == list(range(1, 10))
    titles = " | ".join(s.title.lower() for s in spec.sections)
    for word in (
        "system",
        "parameters",
        "state",
        "actions",
        "design flags",
        "as-built",
        "properties",
        "http",
        "command-line",
    ):
        assert word in titles
    # every numbered heading is a stable anchor of the form "## §n Title"
    headings = [line for line in spec.text.splitlines() if line.startswith("## ")]
    assert len(headings) == 9 and all(re.fullmatch(r"## §\d \S.*", h) for h in headings)


def test_every_spec_reference_resolves():
    refs = all_references()
    # the scan sees the code's references (about a hundred), not a vacuous few
    assert len(refs) >= 80, len(refs)
    assert len({path for path, *_ in refs}) >= 15
    known = spec_numbers()
    bad = [
        f"{path}:{line}: {text!r}" for path, line, text, nums in refs if not nums or not set(nums) <= known
    ]
    assert not bad, "references to no section of docs/spec.md:\n" + "\n".join(bad)


def test_no_tracked_file_points_outside_the_repository():
    bad = []
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        rel = path.relative_to(ROOT).as_posix()
        for word in FORBIDDEN:
            if word in text and (rel, word) not in TOLERATED:
                line = text.count("\n", 0, text.index(word)) + 1
                bad.append(f"{rel}:{line}: {word}")
    assert not bad, "paths outside the repository (use docs/...):\n" + "\n".join(bad)


def test_readme_points_to_the_spec():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/spec.md" in readme


def test_spec_states_what_the_code_relies_on():
    """The readings and contract points that used to live only in code and README."""
    text = SPEC_FILE.read_text(encoding="utf-8")
    opening = text.split("## §1")[0]
    assert '"SPEC §n"' in opening and "kvheal spec" in opening
    spec = parse(text)
    section = {s.number: s.text for s in spec.sections}
    assert "{m : post[m] ≠ Unsent}" in section[3]  # stored is derived
    assert "Stutter" in section[4] and '"Stutter"' in section[9]
    for name in (
        "PostCache(m)",
        "HealCache(m)",
        "SweepCache",
        "PendingWrite(t)",
        "lists[t]",
        "sweeper_skip_noop_write",
        "Crash(t)",
    ):
        assert name in section[5], name
    assert "| 3 |" in section[9] and "unknown" in section[9]
    assert text.count("**Reading") >= 8
    for fact in ("6 seconds", "IndexedDB", "60 seconds", "one write per second", "answers 200", "bot"):
        assert fact in section[6], fact


def test_installed_spec_is_the_repository_spec():
    assert read("spec.md") == SPEC_FILE.read_text(encoding="utf-8")
    assert read("post-mortem.md") == (ROOT / "docs" / "post-mortem.md").read_text(encoding="utf-8")
    with pytest.raises(ValueError):
        read("../pyproject.toml")


def test_find_section_by_number_word_and_alias():
    spec = parse(read("spec.md"))
    assert find(spec, "4").number == find(spec, "§4").number == find(spec, "actions").number == 4
    assert find(spec, "Design").number == find(spec, "variants").number == 5
    assert find(spec, "cli").number == 9
    assert find(spec, "as-built").number == 6
    for bad in ("10", "0", "nothing-like-this", "contract", ""):
        with pytest.raises(LookupError):
            find(spec, bad)


def kvheal(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kvheal", *args], capture_output=True, text=True, timeout=60)


def test_kvheal_spec_prints_the_whole_spec():
    proc = kvheal("spec")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == read("spec.md")


@pytest.mark.parametrize("arg", ["4", "§4", "actions", "ACTIONS"])
def test_kvheal_spec_prints_one_section(arg):
    proc = kvheal("spec", arg)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("## §4 Actions\n")
    assert "PostWrite(m)" in proc.stdout
    assert "## §3" not in proc.stdout and "## §5" not in proc.stdout


def test_kvheal_spec_unknown_section_is_one_line_exit_2():
    proc = kvheal("spec", "nonsense")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "no section 'nonsense'" in proc.stderr and "4 Actions" in proc.stderr


def test_help_says_where_spec_references_lead():
    proc = kvheal("--help")
    assert proc.returncode == 0
    assert "SPEC §n" in proc.stdout and "kvheal spec" in proc.stdout
    assert "spec" in proc.stdout.split("Commands:")[1]
