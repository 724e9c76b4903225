"""MkDocs hook: the pages link as they must on GitHub; this makes the same links work in the site.

On GitHub the README sits at the root and links `docs/x.md` and `src/...`; the pages in docs/
link `../src/...`, `../README.md`, `../configs/...`. In the site the README becomes the home
page (index.md) and every repository file a page links to is copied beside the pages under its
own path, so MkDocs checks those links as it checks any other: a link to a file that does not
exist is a warning, and `mkdocs build --strict` fails on it. A link to a folder goes to the
folder's `__init__.py`.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

LINK = re.compile(r"(\]\(|<img src=\"|href=\")([^)\"#\s]+)")
REPO_PREFIXES = ("src/", "configs/", "benchmarks/", "examples/", "tests/")


def _repo(config) -> Path:
    return Path(config["docs_dir"]).resolve().parent


def _target(link: str, in_readme: bool) -> str | None:
    """The repository path a link points at, when it leaves the docs folder; else None."""
    if "://" in link or link.startswith(("mailto:", "/")):
        return None
    if in_readme:
        return None if link.startswith("docs/") else link
    return link[3:] if link.startswith("../") else None


def _rewrite(markdown: str, in_readme: bool, repo: Path) -> str:
    def fix(match: re.Match) -> str:
        prefix, link = match.groups()
        if in_readme and link.startswith("docs/"):
            return prefix + link[len("docs/") :]
        target = _target(link, in_readme)
        if target is None:
            return match.group(0)
        if target == "README.md":
            return prefix + "index.md"
        if (repo / target).is_dir():
            target = target.rstrip("/") + "/__init__.py"
        return prefix + target

    return LINK.sub(fix, markdown)


def _linked_repo_files(text: str, in_readme: bool, repo: Path) -> set[str]:
    found = set()
    for _, link in LINK.findall(text):
        target = _target(link, in_readme)
        if target is None or target == "README.md" or not target.startswith(REPO_PREFIXES):
            continue
        if (repo / target).is_dir():
            target = target.rstrip("/") + "/__init__.py"
        if (repo / target).is_file():  # a missing one stays unlinked: MkDocs warns about it
            found.add(target)
    return found


def on_files(files: Files, config) -> Files:
    repo = _repo(config)
    readme = (repo / "README.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "index.md", content=readme))
    linked = _linked_repo_files(readme, True, repo)
    for page in Path(config["docs_dir"]).glob("*.md"):
        linked |= _linked_repo_files(page.read_text(encoding="utf-8"), False, repo)
    for target in sorted(linked):
        files.append(File.generated(config, target, abs_src_path=str(repo / target)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    return _rewrite(markdown, page.file.src_uri == "index.md", _repo(config))
