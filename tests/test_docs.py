"""The pointers into docs/ resolve, and the README's architecture section names nodes and files that exist."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"
# "docs/pipeline.md#ddim-loop" in code and README; "(departures.md#b1)" / "(#vae)" between the docs pages
CODE_POINTER = re.compile(r"docs/([\w-]+\.md)(?:#([\w-]+))?")
DOCS_LINK = re.compile(r"\]\(([\w-]+\.md)?(?:#([\w-]+))?\)")


def heading_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = page.read_text()
    explicit = set(re.findall(r'<a id="([\w-]+)"></a>', text))
    return explicit | {heading_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.js", "*.sh"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    return [REPO / name for name in names if not name.startswith("tests/ui/node_modules/")]


def check_pointer(source: Path, page_name: str, anchor: str | None) -> str | None:
    page = DOCS / page_name
    if not page.is_file():
        return f"{source.relative_to(REPO)} points at {page_name}, which docs/ does not have"
    if anchor and anchor not in anchors(page):
        return f"{source.relative_to(REPO)} points at {page_name}#{anchor}, which has no such section"
    return None


def test_every_pointer_into_docs_resolves():
    broken = []
    for path in tracked_text_files():
        text = path.read_text(errors="replace")
        broken += [check_pointer(path, page, anchor) for page, anchor in CODE_POINTER.findall(text)]
        if path.parent == DOCS:
            broken += [check_pointer(path, page or path.name, anchor) for page, anchor in DOCS_LINK.findall(text)]
    assert not [b for b in broken if b], "\n".join(b for b in broken if b)


def test_code_cites_docs_not_the_external_spec():
    cites = [f"{path.relative_to(REPO)}: {line.strip()}" for path in tracked_text_files() if path.parent != DOCS
             for line in path.read_text(errors="replace").splitlines() if re.search(r"\bspec (§|B\d|Appendix)", line)]
    assert not cites, "cite docs/pipeline.md or docs/departures.md instead:\n" + "\n".join(cites)


@pytest.fixture(scope="module")
def architecture() -> str:
    text = README.read_text()
    assert "## Architecture" in text, "README.md has no Architecture section"
    return text.split("## Architecture", 1)[1].split("\n## ", 1)[0]


def test_architecture_names_real_nodes(architecture):
    node_ids = set(re.findall(r'node_id="APK_(\w+)"', "".join(p.read_text() for p in (REPO / "nodes").glob("*.py"))))
    stages = architecture.split("Folders:")[0].replace("Sampler(ToFile)", "SamplerToFile")
    named = {word for word in re.findall(r"\b[A-Z]\w*[a-z]\w*\b", stages) if sum(c.isupper() for c in word) > 1}
    assert named <= node_ids, f"not nodes of the pack: {sorted(named - node_ids)}"


def test_architecture_table_names_real_files(architecture):
    missing = []
    for row in re.findall(r"^\| (?!Stage|---)(.+) \|$", architecture, re.M):
        _, node_cell, library_cell = row.split(" | ")
        missing += [f"nodes/{name}" for name in re.findall(r"`([\w.]+)`", node_cell)
                    if not (REPO / "nodes" / name).is_file()]
        for folder, members in re.findall(r"`([\w/.]+)`(?: \(([^)]*)\))?", library_cell):
            paths = [REPO / "aniportrait" / folder / f"{m}.py" for m in re.findall(r"`(\w+)`", members)]
            missing += [str(p.relative_to(REPO)) for p in [REPO / "aniportrait" / folder, *paths] if not p.exists()]
    assert not missing, f"README's architecture table names files that do not exist: {missing}"


def test_architecture_lists_every_top_level_folder(architecture):
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    folders = {name.split("/")[0] for name in tracked.split() if "/" in name and not name.startswith(".")}
    described = set(re.findall(r"`(\w+)/`", architecture.split("Folders:", 1)[1]))
    assert folders <= described, f"folders the README's architecture section does not describe: {folders - described}"
