"""training/report/pdf.py without Chromium: links beside the PDF made relative in place."""

from __future__ import annotations

from pathlib import Path

from training.report.pdf import relative_links


def _pdf(folder: Path, body: bytes) -> Path:
    path = folder / "report.pdf"
    path.write_bytes(b"%PDF-1.4\n" + body + b"\nxref\n%%EOF\n")
    return path


def test_links_to_files_beside_the_pdf_become_relative_and_keep_every_offset(
    tmp_path: Path,
) -> None:
    here = tmp_path.resolve().as_uri()
    body = (
        f"<< /S /URI /URI ({here}/technical.pdf) >>\n"
        f"<< /S /URI /URI ({here}/sub/other.pdf) >>\n"  # not beside it: kept
        "<< /S /URI /URI (file:///elsewhere/technical.pdf) >>\n"
    ).encode("ascii")
    path = _pdf(tmp_path, body)
    before = path.read_bytes()
    assert relative_links(path) == 1
    after = path.read_bytes()
    assert len(after) == len(before)  # the cross-reference offsets stay true
    assert b"/URI (technical.pdf) " in after
    assert f"({here}/sub/other.pdf)".encode() in after
    assert b"(file:///elsewhere/technical.pdf)" in after
    assert after.index(b"xref") == before.index(b"xref")


def test_a_pdf_without_such_links_is_left_alone(tmp_path: Path) -> None:
    path = _pdf(tmp_path, b"<< /S /URI /URI (https://example.org/) >>")
    before = path.read_bytes()
    assert relative_links(path) == 0
    assert path.read_bytes() == before
