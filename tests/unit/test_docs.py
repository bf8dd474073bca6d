"""The docs without a server: links resolve, every setting is documented, curl examples runnable.

The curl examples themselves run against a served store in tests/e2e/test_docs.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from pydantic_settings import BaseSettings

from service.settings import ServingSettings
from tests.conftest import REPO
from tests.markdown import anchors, curl_examples, doc_files, relative_links, shell_problems
from training.settings import TrainingSettings

SETTINGS_PAGE = REPO / "docs" / "settings.md"
SIDES = [("KILN_SERVE_", ServingSettings), ("KILN_TRAIN_", TrainingSettings)]


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _links() -> list[tuple[Path, int, str]]:
    return [(path, line, target) for path in doc_files() for line, target in relative_links(path)]


def test_the_docs_have_pages_and_links() -> None:
    assert {p.name for p in doc_files()} >= {"README.md", "serving.md", "settings.md"}
    assert len(_links()) > 20


@pytest.mark.parametrize(
    ("path", "line", "target"), _links(), ids=[f"{_rel(p)}:{n}:{t}" for p, n, t in _links()]
)
def test_relative_link_points_to_an_existing_file(path: Path, line: int, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    linked = (path.parent / unquote(file_part)).resolve() if file_part else path
    assert linked.exists(), f"{_rel(path)}:{line}: {target} does not exist"
    assert linked.is_relative_to(REPO), f"{_rel(path)}:{line}: {target} leaves the repository"
    if anchor and linked.suffix == ".md":
        assert anchor in anchors(linked), (
            f"{_rel(path)}:{line}: {target}: no heading with anchor #{anchor} in "
            f"{_rel(linked)} (has {sorted(anchors(linked))})"
        )


@pytest.mark.parametrize(("prefix", "settings"), SIDES, ids=[p for p, _ in SIDES])
def test_every_setting_has_a_row_in_the_settings_table(
    prefix: str, settings: type[BaseSettings]
) -> None:
    rows = set(re.findall(r"^\| `(KILN_\w+)` \|", SETTINGS_PAGE.read_text(), re.MULTILINE))
    fields = {prefix + name.upper() for name in settings.model_fields}
    assert fields - rows == set(), f"add these to {_rel(SETTINGS_PAGE)}"


@pytest.mark.parametrize(("prefix", "settings"), SIDES, ids=[p for p, _ in SIDES])
def test_every_setting_the_docs_name_exists(prefix: str, settings: type[BaseSettings]) -> None:
    fields = {prefix + name.upper() for name in settings.model_fields}
    named = {
        (name, _rel(path))
        for path in doc_files()
        for name in re.findall(rf"\b{prefix}[A-Z0-9_]*[A-Z0-9]\b", path.read_text())
    }
    assert {(n, p) for n, p in named if n not in fields} == set(), "not a setting (any more?)"


def test_the_curl_examples_can_run_as_written() -> None:
    examples = curl_examples()
    assert len(examples) >= 5
    problems = [f"{e.id}: {p}" for e in examples for p in shell_problems(e)]
    assert problems == []
    assert any(e.status is not None for e in examples)  # an error example, with its status
