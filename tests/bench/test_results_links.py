"""The in-file links of RESULTS.md (the goal ledger's rows point at the sections holding each figure) name
headings that exist, by GitHub's anchor rule, so a retitled section cannot leave a row pointing nowhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "recipes" / "bench" / "RESULTS.md"


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but `-` and `_` dropped, spaces to `-`, repeats `-1`, `-2`."""
    seen: dict[str, int] = {}
    found, fenced = set(), False
    for line in markdown.splitlines():
        fenced ^= line.startswith("```")
        heading = re.match(r"#{1,6} (.+)", line)
        if heading and not fenced:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return found


@pytest.mark.parametrize(("heading", "anchor"), [
    ("## recommend() vs stock generate()", "recommend-vs-stock-generate"),
    ("### Prepare peak 1M -> 10M, before and after (issue 14)", "prepare-peak-1m---10m-before-and-after-issue-14"),
    ("#### GAMER+rerank fit on top of the rule (`rule_coef`)", "gamerrerank-fit-on-top-of-the-rule-rule_coef"),
])
def test_anchors_follow_githubs_rule(heading, anchor):
    assert anchors(heading) == {anchor}


def test_repeated_headings_are_numbered():
    assert anchors("### Reading\n\n### Reading\n\n```\n# not a heading\n```\n") == {"reading", "reading-1"}


def test_every_in_file_link_of_results_names_a_heading():
    text = RESULTS.read_text(encoding="utf-8")
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert links, "the goal ledger links its rows to their sections"
    assert sorted(set(links) - anchors(text)) == []
