"""The names of a report's files, defined once: the templates link each document to the
other by these relative names, so the pair works wherever its folder is copied."""

from __future__ import annotations

__all__ = ["CLIENT_HTML", "CLIENT_PDF", "TECHNICAL_HTML", "TECHNICAL_PDF"]

CLIENT_HTML = "report.html"
CLIENT_PDF = "report.pdf"
TECHNICAL_HTML = "technical.html"
TECHNICAL_PDF = "technical.pdf"
