"""Reading the project's Markdown for the docs tests: code blocks, curl examples, links.

The rules a page follows so that its examples can be run (docs/development.md, Tests):
every command in a ``sh`` or ``console`` block that starts with ``curl`` is an example; it
talks to ``http://127.0.0.1:3000`` and uses no pipes or redirections; a comment line right
after it that starts with a status (``# 400 {"error": ...}``) says which error it shows,
otherwise it answers 2xx with JSON.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

__all__ = [
    "BASE_URL",
    "Block",
    "CurlExample",
    "anchors",
    "curl_examples",
    "doc_files",
    "fenced_blocks",
    "relative_links",
    "shell_problems",
]

BASE_URL = "http://127.0.0.1:3000"
_SHELL_LANGS = {"sh", "console"}
_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
_STATUS = re.compile(r"^#\s*([1-5]\d\d)\b")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+).+?\1")
_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "&"}


def doc_files() -> list[Path]:
    """README.md and every page under docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # 1-based line of the first line inside the fence
    lines: list[str]


def fenced_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.group(2), opening.group(3).lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j])
            j += 1
        blocks.append(Block(lang, i + 2, body))
        i = j + 1
    return blocks


def _outside_code(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks."""
    inside: set[int] = set()
    for block in fenced_blocks(path):
        inside.update(range(block.line - 1, block.line + len(block.lines) + 1))
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(n, text) for n, text in enumerate(lines, start=1) if n not in inside]


@dataclass(frozen=True)
class CurlExample:
    path: Path
    line: int
    command: str  # as written, continuation lines joined
    argv: list[str]  # split as a POSIX shell would
    status: int | None  # the error status the example shows, or None for 2xx

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _complete(text: str) -> bool:
    if text.endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def _commands(block: Block) -> list[tuple[int, str, list[str]]]:
    """(line, command, the comment lines right after it) for each command of a shell block."""
    found: list[tuple[int, str, list[str]]] = []
    pending: list[str] = []
    start = 0
    after = False  # the lines just after a command: its comments, if any
    for n, raw in enumerate(block.lines, start=block.line):
        line = raw
        if not pending:
            is_command = True
            if block.lang == "console":
                is_command = line.startswith("$ ")
                line = line[2:] if is_command else line
            stripped = line.strip()
            if not is_command or not stripped or stripped.startswith("#"):
                if after and stripped.startswith("#"):
                    found[-1][2].append(stripped)
                else:
                    after = False
                continue
            start = n
        pending.append(line)
        text = "\n".join(pending)
        if _complete(text):
            found.append((start, text, []))
            pending, after = [], True
    if pending:
        found.append((start, "\n".join(pending), []))
    return found


def curl_examples() -> list[CurlExample]:
    """Every curl command in the shell blocks of README.md and docs/*.md."""
    examples: list[CurlExample] = []
    for path in doc_files():
        for block in fenced_blocks(path):
            if block.lang not in _SHELL_LANGS:
                continue
            for line, command, comments in _commands(block):
                if not command.lstrip().startswith("curl"):
                    continue
                joined = command.replace("\\\n", "")  # as the shell joins continued lines
                argv = shlex.split(joined, comments=True)
                status = None
                following = comments[0] if comments else ""
                if match := _STATUS.match(following):
                    status = int(match.group(1))
                examples.append(CurlExample(path, line, command, argv, status))
    return examples


def shell_problems(example: CurlExample) -> list[str]:
    """What keeps an example from running as written against the test server."""
    problems = []
    if not any(arg.startswith(BASE_URL) for arg in example.argv):
        problems.append(f"no URL under {BASE_URL}")
    if _OPERATORS & set(example.argv):
        problems.append("a shell operator (pipe, redirection, list)")
    if any(re.search(r"<[a-z_-]+>", arg) for arg in example.argv if arg.startswith("http")):
        problems.append("a placeholder in the URL")
    return problems


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link and image outside code that is not a URL."""
    links = []
    for n, text in _outside_code(path):
        for match in _LINK.finditer(_CODE_SPAN.sub("", text)):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, mailto:
                continue
            links.append((n, target))
    return links


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, text in _outside_code(path):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", text)
        if not match:
            continue
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found
