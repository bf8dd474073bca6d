"""PDFs of the report's HTML documents, printed by headless Chromium (Debian's ``chromium``).

Chromium runs with a fresh profile in a temporary directory, no network services, no sandbox
(CI runs as root) and no GPU; the report needs nothing from outside, so it prints offline.
Chromium writes each link as an absolute ``file://`` URI; the links to files beside the PDF
(the client's report and the technical document link to each other) are made relative
again, so the pair still links up once its folder is copied or mailed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from kiln.errors import KilnError

__all__ = ["CHROMIUM_NAMES", "ReportError", "find_chromium", "relative_links", "write_pdf"]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-pdf-header-footer",
)


class ReportError(KilnError):
    """A report could not be written (a file, or Chromium for the PDF)."""


def find_chromium() -> str | None:
    """``$KILN_CHROMIUM``, or the first Chromium on ``PATH``."""
    configured = os.environ.get("KILN_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


def write_pdf(html_path: Path, pdf_path: Path | None = None, *, timeout: float = 120) -> Path:
    """Print ``html_path`` to ``pdf_path`` (default: beside it, ``.pdf``); return its path."""
    chromium = find_chromium()
    if chromium is None:
        raise ReportError(
            "a PDF needs Chromium, and none was found (looked for "
            f"{', '.join(CHROMIUM_NAMES)} on PATH, or $KILN_CHROMIUM): on Debian or Ubuntu, "
            "`apt-get install chromium`; the HTML report is written without it"
        )
    pdf_path = (pdf_path or html_path.with_suffix(".pdf")).resolve()
    pdf_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="kiln-chromium-") as profile:
        command = [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ReportError(f"Chromium did not print {html_path} within {timeout:g} s") from None
        except OSError as exc:
            raise ReportError(f"cannot run {chromium}: {exc}") from None
    if not pdf_path.is_file() or pdf_path.read_bytes()[:4] != b"%PDF":
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise ReportError(f"Chromium printed no PDF (exit {done.returncode}): {tail}")
    relative_links(pdf_path)
    return pdf_path


def relative_links(pdf_path: Path) -> int:
    """Rewrite the PDF's links to files in its own folder (``(file:///…/dir/name)``) as
    relative ones (``(name)``); return how many.

    Each string keeps its length, padded with spaces after its closing parenthesis (space
    between a dictionary's tokens), so every byte offset in the cross-reference table stays
    true and the file needs no rewriting by a PDF library.
    """
    data = pdf_path.read_bytes()
    folder = (pdf_path.parent.resolve().as_uri() + "/").encode("ascii")
    pattern = re.compile(rb"\(" + re.escape(folder) + rb"([A-Za-z0-9._-]+)\)")
    changed, count = pattern.subn(lambda m: b"(" + m.group(1) + b")" + b" " * len(folder), data)
    if count:
        pdf_path.write_bytes(changed)
    return count
