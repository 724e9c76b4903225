"""The shell commands of README.md and docs/*.md, as a reader would copy them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHELL = {"sh", "bash", "shell", "console"}


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a # inside quotes stays)."""
    quote = None
    for i, ch in enumerate(line):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def commands_of(block: str) -> list[str]:
    """One string per command: continuation lines joined, comments and blanks dropped."""
    out: list[str] = []
    pending = ""
    for raw in block.splitlines():
        line = _strip_comment(raw)
        if raw.lstrip().startswith("#"):
            continue
        if pending:
            line = pending + " " + line.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        pending = ""
        if line.strip():
            out.append(" ".join(line.split()))
    return out


def doc_commands() -> dict[str, list[str]]:
    """page name -> its shell commands, in order."""
    found = {}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        commands = []
        for lang, body in FENCE.findall(text):
            if lang in SHELL:
                commands += commands_of(body)
        found[page.relative_to(ROOT).as_posix()] = commands
    return found


def python_snippets() -> list[tuple[str, str]]:
    """(page, code) of every ```python block."""
    return [
        (page.relative_to(ROOT).as_posix(), body)
        for page in PAGES
        for lang, body in FENCE.findall(page.read_text(encoding="utf-8"))
        if lang == "python"
    ]
