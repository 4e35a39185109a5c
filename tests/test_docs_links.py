"""The documentation holds together: every relative link of README.md, ARCHITECTURE.md and docs/*.md points at
a file that exists (and, with a #fragment into a markdown file, at one of its headings), the README stays a
short page for newcomers, and its command table has one row per `stcl` command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stcl.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed (links are not parsed there)."""
    out, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            out.append(INLINE_CODE.sub("", line))
    return out


def links(text: str) -> list[str]:
    return [m.group(1) for line in prose_lines(text) for m in LINK.finditer(line)]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(text):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_slug_matches_githubs_rule():
    assert slug("The recipe's claims over seeds, and what to expect from a run") == (
        "the-recipes-claims-over-seeds-and-what-to-expect-from-a-run"
    )
    assert slug("`stcl plan`, 8 × A100-80GB") == "stcl-plan-8--a100-80gb"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_links_are_found_outside_code_only():
    text = "see [a](a.md) and `[b](b.md)`\n```\n[c](c.md)\n```\n![d](d.png)"
    assert links(text) == ["a.md", "d.png"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path):
    text = doc.read_text(encoding="utf-8")
    broken = []
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not a file of this repository
            continue
        path_part, _, fragment = target.partition("#")
        dest = doc if not path_part else (doc.parent / path_part).resolve()
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif not dest.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading #{fragment} in {dest.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_nothing_outside_the_repository(doc: Path):
    """No path that climbs out of the clone (a user has only the repository)."""
    import re

    text = doc.read_text(encoding="utf-8")
    outside = [m.group(0) for m in re.finditer(r"(?<![\w.])\.\./[\w./-]+", text)
               if not (doc.parent / m.group(0)).resolve().is_relative_to(ROOT)]
    assert not outside, f"{doc.relative_to(ROOT)} names paths outside the repository: {outside}"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_readme_command_table_has_one_row_per_command():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `stcl ([a-z_-]+)", text, flags=re.MULTILINE)
    named = [r.replace("-", "_") for r in rows]
    assert sorted(named) == sorted(COMMANDS), (
        f"README command table: missing {sorted(set(COMMANDS) - set(named))}, "
        f"unknown {sorted(set(named) - set(COMMANDS))}, duplicated {sorted({n for n in named if named.count(n) > 1})}"
    )
