"""docs/operations.md: every alert of deploy/alerts.yml is explained, and every file,
test and README section it points to exists."""

from __future__ import annotations

import re
from pathlib import Path

from tests.deploy.test_alerts import rules

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operations.md"


def test_every_alert_has_a_row() -> None:
    text = GUIDE.read_text()
    section = text.split("\n## Alerts\n", 1)[1]
    explained = set(re.findall(r"^\| `(Tollgate[A-Za-z]+)` \| .{40,}", section, re.MULTILINE))
    assert explained == set(rules())


def test_named_files_and_readme_sections_exist() -> None:
    text = GUIDE.read_text()
    for path in set(re.findall(r"`((?:tests|deploy|bench)/[\w./-]+)`", text)):
        assert (ROOT / path).exists(), path
    readme = (ROOT / "README.md").read_text()
    headings = {
        re.sub(r"[^\w -]", "", h).strip().lower().replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", readme, re.MULTILINE)
    }
    for anchor in re.findall(r"\(\.\./README\.md#([\w-]+)\)", text):
        assert anchor in headings, anchor


def test_the_readme_points_to_the_guide() -> None:
    assert "(docs/operations.md)" in (ROOT / "README.md").read_text()
