"""Every fenced ```python and ```bash block of README.md and docs/**/*.md runs as written.

Blocks run in the order they appear, in one temporary working directory per document, on the
installed package: bash blocks through ``bash -e`` (``set -e``), python blocks as scripts through
this interpreter (so a block that starts worker processes needs its ``if __name__ ==
"__main__":`` guard, as it would for a user). A later block may use the files an earlier one wrote.

Conventions in the Markdown (an HTML comment on the line directly above the opening fence):

- ``<!-- skip-test -->``: never run (illustrative, needs a cluster, a GPU or the network, or a
  benchmark that measures for minutes);
- ``<!-- slow-test -->``: run only in the slow suite (``pytest -m slow``), which runs every block.

A page that builds on another's files (a how-to guide auditing the tutorial's ``model.onnx``) says
so on a line of its own, anywhere in the page: ``<!-- test-requires: tutorials/first-audit.md
make_example.py -->`` runs, in the same directory and before the page's own blocks, the named
blocks (by their ``# NAME.EXT`` first line) of that page (relative to ``docs/``), or all its
blocks not marked skip-test or slow-test when no block is named. Nothing is set up for a page
none of whose blocks runs.

A block whose first line is ``# NAME.EXT`` (e.g. ``# my_attack.py``, ``# grid.yaml``,
``# my-plugin/pyproject.toml``) is also written to that file first, so a later block can use it;
toml / yaml / json blocks are run by nothing, only written when they name a file. Whatever the
repository root offers a user (``benchmarks/``, ``examples/``) is linked into the directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNABLE = {"python", "bash"}
_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_FILENAME = re.compile(r"^#\s*([\w./-]+\.(?:py|toml|ya?ml|json|txt|cfg))\b")
_REQUIRES = re.compile(r"^<!--\s*test-requires:\s*(\S+)((?:\s+[\w./-]+)*)\s*-->\s*$")


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str  # "", "skip-test" or "slow-test"

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def filename(self) -> str | None:
        first = self.code.lstrip().splitlines()[0] if self.code.strip() else ""
        m = _FILENAME.match(first)
        return m.group(1) if m else None


def extract(doc: Path) -> list[Block]:
    """The fenced blocks of ``doc`` with their line numbers and test markers.

    Raises:
        ValueError: an opening fence is never closed (names the line).
    """
    lines = doc.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m or not m.group(2):
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2).lower(), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{doc.name}:{start + 1}: the ```{lang} fence is never closed")
        above = lines[start - 1].strip() if start else ""
        marker = ""
        for name in ("skip-test", "slow-test"):
            if re.fullmatch(rf"<!--\s*{name}\s*-->", above):
                marker = name
        blocks.append(Block(doc, start + 1, lang, "\n".join(body) + "\n", marker))
        i += 1
    return blocks


def _workspace(tmp: Path) -> Path:
    for name in ("benchmarks", "examples"):
        if (ROOT / name).exists():
            (tmp / name).symlink_to(ROOT / name)
    return tmp


def _sandbox_python(tmp: Path) -> Path:
    """A throw-away venv that sees this environment's packages (a .pth runs ``site.addsitedir``).

    What a block ``pip install``s lands in the sandbox, never in the environment running the
    tests; ``python``, ``pip`` and ``audit-sdk`` on the blocks' PATH are the sandbox's.
    """
    import site
    import sysconfig
    import venv

    root = tmp / "_venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    py = root / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True)
    ours = [p for p in (sysconfig.get_paths()["purelib"], *site.getsitepackages()) if Path(p).is_dir()]
    (Path(purelib.stdout.strip()) / "_audit_sdk_parent.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in dict.fromkeys(ours))
    )
    for name, module in (("pip", "pip"), ("audit-sdk", "audit_sdk.cli")):
        launcher = root / "bin" / name
        launcher.write_text(f'#!/bin/sh\nexec "{py}" -m {module} "$@"\n')
        launcher.chmod(0o755)
    return py


def _env(tmp: Path, python: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env["PIP_NO_DEPS"] = "1"  # a block's package depends on audit-sdk: the one under test
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.pop("VIRTUAL_ENV", None)
    env.pop("AUDIT_SDK_DISABLE_PLUGINS", None)
    return env


def run_block(block: Block, cwd: Path, env: dict[str, str], *, timeout: float, python: str = sys.executable) -> str:
    """Run one block; return its output, or fail naming the block's file and line."""
    name = block.filename
    if name:
        path = cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.code)
    if block.lang == "python":
        script = cwd / (name if name and name.endswith(".py") else f"_block_{block.doc.stem}_{block.line}.py")
        script.write_text(block.code)
        cmd = [python, str(script)]
    elif block.lang == "bash":
        cmd = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    else:
        return ""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"")[-3000:] if isinstance(exc.stdout, bytes) else (exc.stdout or "")[-3000:]
        pytest.fail(f"{block.where}: ```{block.lang} block ran past {timeout:.0f} s\n{out}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"{block.where}: ```{block.lang} block exited {proc.returncode} after {time.perf_counter() - t0:.0f} s\n"
            f"--- block ---\n{block.code}--- stdout (tail) ---\n{proc.stdout[-3000:]}\n--- stderr (tail) ---\n{proc.stderr[-5000:]}",
            pytrace=False,
        )
    return proc.stdout + proc.stderr


def requirements(doc: Path, docs_root: Path = ROOT / "docs") -> list[tuple[Path, list[str]]]:
    """The ``<!-- test-requires: PAGE [FILE ...] -->`` lines of ``doc``: (page under docs/, block file names).

    Raises:
        ValueError: a required page does not exist (names the line).
    """
    found = []
    for i, line in enumerate(doc.read_text().splitlines(), 1):
        m = _REQUIRES.match(line.strip())
        if m:
            page = docs_root / m.group(1)
            if not page.is_file():
                raise ValueError(f"{doc.name}:{i}: test-requires names {m.group(1)!r}, which is not a page under docs/")
            found.append((page, m.group(2).split()))
    return found


def _setup_blocks(doc: Path, docs_root: Path = ROOT / "docs", seen: set[Path] | None = None) -> list[Block]:
    """The blocks that ``doc``'s test-requires lines ask for, their own requirements first."""
    seen = set() if seen is None else seen
    blocks: list[Block] = []
    for page, names in requirements(doc, docs_root):
        if page not in seen:
            seen.add(page)
            blocks += _setup_blocks(page, docs_root, seen)
        for b in extract(page):
            if (b.filename in names) if names else (b.lang in RUNNABLE and not b.marker):
                blocks.append(b)
    return blocks


def _run_doc(doc: Path, tmp_path: Path, *, include_slow: bool) -> list[str]:
    cwd = _workspace(tmp_path)
    python = _sandbox_python(tmp_path)
    env = _env(tmp_path, python)
    timeout = 3600 if include_slow else 600
    todo = [
        b
        for b in extract(doc)
        if (b.lang in RUNNABLE or b.filename) and b.marker != "skip-test" and (include_slow or b.marker != "slow-test")
    ]
    if any(b.lang in RUNNABLE for b in todo):
        for block in _setup_blocks(doc):
            run_block(block, cwd, env, timeout=timeout, python=str(python))
    ran = []
    for block in todo:
        run_block(block, cwd, env, timeout=timeout, python=str(python))
        ran.append(block.where)
    return ran


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_blocks_fast(doc: Path, tmp_path: Path) -> None:
    """The blocks not marked slow-test run, in order, as written."""
    _run_doc(doc, tmp_path, include_slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_blocks_all(doc: Path, tmp_path: Path) -> None:
    """Every block not marked skip-test runs, in order, as written (slow ones included)."""
    ran = _run_doc(doc, tmp_path, include_slow=True)
    runnable = [b for b in extract(doc) if b.lang in RUNNABLE and b.marker != "skip-test"]
    assert len(ran) >= len(runnable)


def test_extractor_finds_blocks_lines_and_markers(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "# t\n\n```bash\necho a\n```\n\n<!-- skip-test -->\n```python\nraise SystemExit(1)\n```\n"
        "<!-- slow-test -->\n```python\n# f.py\nprint(1)\n```\n  ```bash\n  echo indented\n  ```\n```json\n{}\n```\n"
    )
    blocks = extract(doc)
    assert [(b.line, b.lang, b.marker) for b in blocks] == [
        (3, "bash", ""),
        (8, "python", "skip-test"),
        (12, "python", "slow-test"),
        (16, "bash", ""),
        (19, "json", ""),
    ]
    assert blocks[2].filename == "f.py" and blocks[0].filename is None
    assert blocks[3].code == "echo indented\n"
    doc.write_text("```bash\necho never closed\n")
    with pytest.raises(ValueError, match=r"x.md:1: the ```bash fence is never closed"):
        extract(doc)


def test_a_failing_block_names_its_line(tmp_path: Path) -> None:
    block = Block(ROOT / "README.md", 42, "bash", "echo out; false\n", "")
    with pytest.raises(pytest.fail.Exception, match=r"README.md:42: ```bash block exited 1"):
        run_block(block, tmp_path, _env(tmp_path, Path(sys.executable)), timeout=60)


def test_every_runnable_block_is_run_by_some_suite() -> None:
    """Skipped blocks are few and each is a set-up, cluster or benchmark example, never a normal one.

    A benchmark (``python benchmarks/...``) measures for minutes from a repository checkout; its
    code is exercised by the unit tests of what it measures.
    """
    skipped = [b for doc in DOCS for b in extract(doc) if b.lang in RUNNABLE and b.marker == "skip-test"]
    for b in skipped:
        assert re.search(r"pip install|python -m venv|ray|cuda|gpu|address=|python benchmarks/", b.code, re.I), (
            f"{b.where} is skipped without a reason to be"
        )


def test_requirements_name_existing_pages_and_blocks() -> None:
    """Every test-requires line names a page, and every block it names exists there."""
    for doc in DOCS:
        for page, names in requirements(doc):
            files = {b.filename for b in extract(page)}
            missing = [n for n in names if n not in files]
            assert not missing, f"{doc.relative_to(ROOT)} requires {missing} from {page.relative_to(ROOT)}, which has no such block"


def test_setup_blocks_follow_requirements(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "a").mkdir(parents=True)
    (docs / "a" / "base.md").write_text("```python\n# make.py\nprint(1)\n```\n\n```bash\necho other\n```\n")
    doc = docs / "b.md"
    doc.write_text("<!-- test-requires: a/base.md make.py -->\n\n```bash\necho mine\n```\n")
    assert [b.filename for b in _setup_blocks(doc, docs)] == ["make.py"]
    doc.write_text("<!-- test-requires: a/base.md -->\n")
    assert [b.lang for b in _setup_blocks(doc, docs)] == ["python", "bash"]
    doc.write_text("<!-- test-requires: a/missing.md -->\n")
    with pytest.raises(ValueError, match=r"b.md:1: test-requires names 'a/missing.md'"):
        _setup_blocks(doc, docs)


def test_docs_site_pages_are_all_tested_and_in_the_nav() -> None:
    """The test picks up every page of the site, and mkdocs.yml's nav lists every page."""
    pages = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert {f"docs/{p}" for p in pages} <= {str(d.relative_to(ROOT)) for d in DOCS}
    nav = (ROOT / "mkdocs.yml").read_text()
    assert [p for p in pages if f" {p}" not in nav] == []


def test_readme_is_a_map() -> None:
    """Under 200 lines, and every link into docs/ is a relative link to a page that exists."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 200
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    assert links, "the README links into docs/"
    assert [link for link in links if not (ROOT / link).is_file()] == []
