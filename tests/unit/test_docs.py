"""The repository's own documents stay true: licence, changelog, links, the migration list."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_licence_file_is_the_one_pyproject_names() -> None:
    assert PROJECT["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_the_changelog_names_the_current_version() -> None:
    assert f"## {PROJECT['version']}" in (ROOT / "CHANGELOG.md").read_text()


def test_the_readme_says_which_python() -> None:
    minimum = PROJECT["requires-python"].removeprefix(">=")
    assert f"Python {minimum} or newer" in (ROOT / "README.md").read_text()


def test_every_relative_link_points_into_the_repository() -> None:
    documents = [ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")]
    for document in documents:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
            if "://" in target:
                continue
            path = (document.parent / target).resolve()
            assert path.is_relative_to(ROOT), f"{document.name} links outside: {target}"
            assert path.exists(), f"{document.name} links to a missing file: {target}"


def test_the_architecture_names_the_newest_migration() -> None:
    revisions = sorted(
        p.name[:4] for p in (ROOT / "src/conveyor/store/migrations/versions").glob("0*.py")
    )
    text = (ROOT / "docs/architecture.md").read_text()
    assert f"revisions 0001–{revisions[-1]}" in text
