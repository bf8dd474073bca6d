"""The parts of a scoring input: one file, a directory of data files, or a glob.

``kiln predict --input`` takes any of the three, for both engines, on a local disk or in an
object store (``s3://bucket/in/``, ``gs://...``: any URI pyarrow's filesystems open, with
their own credentials from the environment). A directory's parts are its data files
(:data:`DATA_SUFFIXES`; names starting with "." or "_" are hidden, as Spark and Hive
write them) at any depth; a glob's are the data
files it matches. Parts are scored in the order of their names (relative to the directory,
or as matched), so the output's rows come in one order whatever the engine.

Every part must have the first part's columns (and for Parquet, their types): a part that
differs is named with the difference before any row is scored (:func:`check_schemas`).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.errors import DataError

__all__ = ["DATA_SUFFIXES", "Part", "is_uri", "list_parts", "open_filesystem"]

DATA_SUFFIXES = frozenset({".csv", ".tsv", ".tab", ".txt", ".parquet", ".pq"})
_GLOB = frozenset("*?[")


@dataclass(frozen=True)
class Part:
    """One data file of an input: where it is, and its name as messages and rejects say it
    (relative to the input's directory; the whole location for a single file)."""

    location: str
    name: str

    @property
    def suffix(self) -> str:
        return Path(self.location.rstrip("/")).suffix.lower()


def is_uri(location: str) -> bool:
    """An object-store (or ``file://``) location rather than a local path."""
    return "://" in location


def open_filesystem(location: str) -> tuple[Any, str]:
    """(a pyarrow filesystem, the path in it) for a URI or a local path."""
    import pyarrow.fs as pafs

    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).resolve())
    try:
        return pafs.FileSystem.from_uri(location)
    except Exception as exc:  # pyarrow raises several types for an unknown or bad URI
        raise DataError(f"cannot be opened: {exc}", source=location) from None


def _data_file(path: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return not name.startswith((".", "_")) and Path(name).suffix.lower() in DATA_SUFFIXES


def list_parts(location: str | Path) -> list[Part]:
    """The parts of ``location`` (a file, a directory or a glob), in name order.

    Raises DataError naming the location when it does not exist or holds no data file.
    """
    text = str(location)
    if not is_uri(text) and _GLOB & set(text):
        # glob.glob: the pattern as typed, absolute or relative (Path.glob needs a base)
        found = glob.glob(text, recursive=True)  # noqa: PTH207
        matched = sorted(m for m in found if _data_file(m))
        if not matched:
            raise DataError("matches no CSV, TSV or Parquet file", source=text)
        return [Part(m, m) for m in matched if Path(m).is_file()]
    import pyarrow.fs as pafs

    fs, path = open_filesystem(text)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [Part(text, text)]
    if info.type != pafs.FileType.Directory:
        raise DataError("file not found", source=text)
    found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    root = path.rstrip("/") + "/"
    names = sorted(
        f.path[len(root) :] for f in found if f.type == pafs.FileType.File and _data_file(f.path)
    )
    if not names:
        raise DataError("holds no CSV, TSV or Parquet file", source=text)
    base = text.rstrip("/") + "/"
    return [Part(base + name, name) for name in names]
