"""The printed reports, as a reader holds them: Chromium's PDFs, rasterised page by page.

For the demo binary model (churn), a multi-class one (wine), a regressor (diabetes) and a
small-data model (churn trained on 150 rows): the client's PDF has the number of pages the
issue asks for, no page but the last is near-blank (ink and fill, measured on the pixels),
the key sentences are printed, and the two PDFs link to each other by relative names. Pages
are rasterised with pypdfium2 (PDFium in a self-contained wheel, the dev extra).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from kiln.store import StoredModel
from tests.conftest import REPO, SPECS
from training.report import Written, write_report
from training.run import train
from training.spec import parse_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
# Client PDF pages, least and most. Typical models: 3 to 5 (the range); churn prints
# 5 (eight charts), wine and diabetes 4 (six). The small model has the same charts as churn
# but no calibration and fewer bands: 3 to 5 as well.
PAGES = {"churn": (3, 5), "wine": (3, 5), "diabetes": (3, 5), "small": (3, 5)}
# A page's ink: the share of its pixels darker than near-white. Full pages measure 0.06-0.26
# and the text-only first page 0.08-0.11 (2026-12-01); a page holding only a footer, 0.005.
INK_FLOOR = 0.03
# A page's fill: the share of its pixel rows with any ink. "No page under a third full": text
# fills about two rows in three of the height it covers, so a third of a page of text measures
# about 0.22; full pages measure 0.53-0.73, a footer-only page 0.01.
FILL_FLOOR = 0.25
SMALL_ROWS = 150
SCALE = 0.5  # 72 dpi * 0.5: 298 x 421 pixels an A4 page, enough to see what is inked


@pytest.fixture(scope="module")
def small_model(bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory) -> StoredModel:
    """churn trained on a 150-row sample: 30 test cases, so the report must say it is few."""
    folder = tmp_path_factory.mktemp("small")
    frame = pd.read_csv(REPO / "training" / "data" / "churn.csv")
    frame.sample(SMALL_ROWS, random_state=0).to_csv(folder / "churn-150.csv", index=False)
    raw = yaml.safe_load((SPECS / "churn.yaml").read_text())
    raw.update(name="churn-small", gate=[], data={"paths": [str(folder / "churn-150.csv")]})
    return train(parse_spec(raw), spec_path=SPECS / "churn.yaml")


@pytest.fixture(scope="module")
def printed(
    served_models: dict[str, StoredModel],
    small_model: StoredModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Written]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    out = tmp_path_factory.mktemp("printed")
    models = {**served_models, "small": small_model}
    return {name: write_report(stored, out / name, pdf=True) for name, stored in models.items()}


@pytest.fixture(scope="module")
def pdfium() -> Any:
    return pytest.importorskip("pypdfium2", reason="pypdfium2 is not installed (dev extra)")


@contextmanager
def _document(pdfium: Any, path: Path | None) -> Iterator[Any]:
    assert path is not None and path.is_file()
    document = pdfium.PdfDocument(path)
    try:
        yield document
    finally:
        document.close()


def _pages(pdfium: Any, path: Path | None) -> list[np.ndarray]:
    """Each page as grey pixels (0 black, 255 white)."""
    with _document(pdfium, path) as document:
        return [
            np.asarray(document[i].render(scale=SCALE).to_pil().convert("L"))
            for i in range(len(document))
        ]


def _text(pdfium: Any, path: Path | None) -> str:
    """The printed text, whitespace collapsed (lines wrap anywhere)."""
    with _document(pdfium, path) as document:
        pages = [document[i].get_textpage().get_text_range() for i in range(len(document))]
    return " ".join(" ".join(pages).split())


def _links(pdfium: Any, path: Path | None) -> list[str]:
    """The URI of every link on every page."""
    raw = pdfium.raw
    found: list[str] = []
    with _document(pdfium, path) as document:
        for i in range(len(document)):
            page = document[i]  # held while its links are read
            position, link = ctypes.c_int(0), raw.FPDF_LINK()
            while raw.FPDFLink_Enumerate(page.raw, ctypes.byref(position), ctypes.byref(link)):
                action = raw.FPDFLink_GetAction(link)
                size = raw.FPDFAction_GetURIPath(document.raw, action, None, 0)
                buffer = ctypes.create_string_buffer(size)
                raw.FPDFAction_GetURIPath(document.raw, action, buffer, size)
                found.append(buffer.value.decode("ascii"))
    return found


def ink(page: np.ndarray) -> float:
    return float((page < 235).mean())


def fill(page: np.ndarray) -> float:
    return float((page < 235).any(axis=1).mean())


@pytest.mark.parametrize("name", list(PAGES))
def test_client_pdf_has_few_full_pages(printed: dict[str, Written], pdfium: Any, name: str) -> None:
    pages = _pages(pdfium, printed[name].client_pdf)
    least, most = PAGES[name]
    assert least <= len(pages) <= most, len(pages)
    measured = [(round(ink(p), 3), round(fill(p), 2)) for p in pages]
    for n, page in enumerate(pages[:-1], start=1):
        assert ink(page) > INK_FLOOR and fill(page) > FILL_FLOOR, (n, measured)
    assert ink(pages[-1]) > 0.005, measured  # the last may be short, not empty


@pytest.mark.parametrize("name", list(PAGES))
def test_technical_pdf_has_no_near_blank_page(
    printed: dict[str, Written], pdfium: Any, name: str
) -> None:
    pages = _pages(pdfium, printed[name].technical_pdf)
    assert len(pages) >= 2
    measured = [(round(ink(p), 3), round(fill(p), 2)) for p in pages]
    for n, page in enumerate(pages[:-1], start=1):
        assert ink(page) > INK_FLOOR and fill(page) > FILL_FLOOR, (n, measured)


@pytest.mark.parametrize("name", list(PAGES))
def test_the_pdfs_link_to_each_other_by_relative_names(
    printed: dict[str, Written], pdfium: Any, name: str
) -> None:
    written = printed[name]
    assert set(_links(pdfium, written.client_pdf)) == {"technical.pdf"}
    assert set(_links(pdfium, written.technical_pdf)) == {"report.pdf"}
    assert written.client.read_text(encoding="utf-8").count('href="technical.html"') == 2


@pytest.mark.parametrize("name", list(PAGES))
def test_the_key_sentences_are_printed(
    printed: dict[str, Written],
    served_models: dict[str, StoredModel],
    small_model: StoredModel,
    pdfium: Any,
    name: str,
) -> None:
    meta = {**served_models, "small": small_model}[name].metadata
    text = _text(pdfium, printed[name].client_pdf)
    for heading in ("In plain words", "How sure we are", "What the data says", "How well it works"):
        assert heading in text
    assert "Compared with the previous version" in text
    if meta.classes:
        assert "It is right" in text and "% of the time, between" in text
    else:
        assert "On average its estimate is" in text
    assert "ROC" not in text and "AUC" not in text and "F1" not in text
    technical = _text(pdfium, printed[name].technical_pdf)
    assert meta.onnx_sha256[:32] in technical.replace(" ", "")


def test_the_small_model_says_its_test_is_small(
    printed: dict[str, Written], small_model: StoredModel, pdfium: Any
) -> None:
    test_cases = small_model.metadata.evaluation.holdout_rows
    assert test_cases == SMALL_ROWS // 5  # churn's holdout: 20%
    text = _text(pdfium, printed["small"].client_pdf)
    assert f"Only {test_cases} cases were kept aside to test it, which is few" in text
    assert f"that needs at least 300 test cases, and there are {test_cases}" in text
