"""The repository stands alone: no tracked file sends its reader to files outside the repository
or to a number in an issue tracker the reader cannot see (docs/design-notes.md, last section).

The patterns are narrow on purpose: store numbers in bank descriptions ("KROGER #412"), colours
("#333") and numbered keys ("key #2") are ordinary text; "issue 12", "[issues 8, 13]",
"owner/repo#123", "(#12)" and "see #12" are references.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# TrueLayer's own OpenAPI documents, kept verbatim, and the brand table generated from
# OpenStreetMap's name-suggestion-index (brand names such as "Cafe#1" are data, not references).
THIRD_PARTY = ("docs/truelayer/", "bank_pipeline/enrich/data/brands.json")

OUTSIDE = re.compile(r"\.\./shared|\bDESIGN\.md\b|(?<![\w/])reference/truelayer")
ISSUE = re.compile(
    r"\bissues?\s*#?\d+\b"  # issue 12, [issues 8, 13], Issue #12
    r"|\b(?:pull requests?|PRs?)\s*#\d+\b"  # PR #4
    r"|[\w.-]+/[\w.-]+#\d+\b"  # owner/repo#123
    r"|\w#\d+\b"  # repo#123, glued to a name
    r"|\(#\d+\)"  # (#12)
    r"|\b(?:see|fixes|fixed|closes|closed|resolves|resolved)\s+#\d+\b",
    re.IGNORECASE,
)


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    paths = [REPO / name for name in names.decode().split("\0") if name and not name.startswith(THIRD_PARTY)]
    return [p for p in paths if p.is_file() and b"\0" not in p.read_bytes()[:4096]]


def references(text: str) -> list[str]:
    """The outside-the-repository and issue-number references in `text`."""
    return [m.group(0) for pattern in (OUTSIDE, ISSUE) for m in pattern.finditer(text)]


def test_the_patterns_catch_references_and_leave_ordinary_text_alone():
    caught = [
        "read ../" + "shared/" + "DESIGN" + ".md first", "see " + "DESIGN" + ".md §2", "# [issue 8] batched", "(issues 8, 13)",
        "Issue #12 says", "dagster-io/dagster#17836", "dagster#17836", "fixed in (#41)", "see #7",
        "the OpenAPI documents in reference/truelayer/", "PR #4",
    ]
    ordinary = [
        "WAL-MART #1234 WAL-MART SUPERCENTER", "KROGER FUEL CTR #412 COLUMBUS OH", 'stroke="#333"',
        "color: #222;", "key #2 is not a valid Fernet key", "card_issuer", "tokens_issued", "issue_tokens(granted)",
        "docs/truelayer/data-api-v1.openapi.json", "#/components/schemas/Error", "the issuer's key",
        "SBB CFF FFS TICKET 14.03.24", "PR 14 SAN JUAN",
    ]
    assert [text for text in caught if not references(text)] == []
    assert {text: references(text) for text in ordinary if references(text)} == {}


def test_no_tracked_file_points_outside_the_repository_or_at_an_issue_number():
    this = Path(__file__).resolve()
    found = {
        f"{path.relative_to(REPO)}:{number}": refs
        for path in _tracked_text_files()
        if path != this
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if (refs := references(line))
    }
    assert found == {}, "say it in the project's own words (docs/), not by pointing outside the repository"
