"""The guide in docs/ and the README hold together: every relative link resolves (files,
and #anchors by GitHub's heading slugs), every ```python block runs as written (unless an
HTML comment `<!-- not run -->` stands above it), every ```yaml config is a valid config,
and the config reference names every key and default that trainer/spec/config.py defines.

The README's own checks (its length, its examples' output, its figures) are in
test_readme.py, which uses the helpers here."""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
NOT_RUN = "<!-- not run -->"
RUN = "<!-- run -->"

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", flags=re.S | re.M)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


# ---- code blocks ---------------------------------------------------------------------------
def blocks(page: Path, lang: str) -> list[tuple[str, str]]:
    """(code, marker) of every fenced block of ``lang`` in ``page``: marker is the HTML
    comment on the last non-blank line above the fence ('' for none)."""
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        if m.group(1) != lang:
            continue
        above = [line for line in text[:m.start()].splitlines() if line.strip()]
        marker = above[-1].strip() if above and above[-1].strip().startswith("<!--") else ""
        found.append((m.group(2), marker))
    return found


def prose(page: Path) -> str:
    """``page`` without its fenced blocks and inline code: where links and headings live."""
    text = FENCE.sub("", page.read_text())
    return re.sub(r"`[^`\n]*`", "", text)


def in_sandbox(tmp_path: Path, monkeypatch) -> None:
    """Runs the examples from a copy of examples/ in tmp_path, so runs/ lands there."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)


def run_python(page: Path) -> dict:
    """Runs the page's python blocks in order in one namespace (a later block may use an
    earlier one's names), as a reader pasting them would; returns the namespace."""
    scope: dict = {"__name__": "__docs__"}
    for code, marker in blocks(page, "python"):
        if marker != NOT_RUN:
            exec(compile(code, name(page), "exec"), scope)
    return scope


def run_shell(code: str) -> None:
    """Runs a shell block marked `<!-- run -->`: each line a `tinysweep` command (comments
    dropped), in this process through the CLI's main, each expected to exit 0."""
    from tinysweep.trainer import cli
    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assert words[0] == "tinysweep", f"only tinysweep commands run here: {line}"
        assert cli.main(words[1:]) == 0, line


# ---- links and anchors ----------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped (letters,
    digits, '-', '_' and spaces kept), each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)     # a link: its text
    text = text.replace("`", "").strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor in ``page``, with GitHub's -1, -2 for repeated slugs."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page))


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):                 # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading '#{anchor}' in {name(file)}")
    assert not broken, f"{name(page)}: " + "; ".join(broken)


def test_every_page_of_the_guide_is_linked():
    linked = set()
    for page in PAGES:
        for target in links(page):
            file = (page.parent / target.partition("#")[0]).resolve()
            if not re.match(r"[a-z]+:", target) and file != page:
                linked.add(file)
    from_readme = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    assert not [name(p) for p in DOCS if p not in linked], "pages no other page links to"
    assert len(from_readme & set(DOCS)) >= len(DOCS) - 1, "the README links into the guide"


def test_slugs_follow_githubs_rules():
    assert slug("Why does my model not converge? `tinysweep diagnose`") == \
        "why-does-my-model-not-converge-tinysweep-diagnose"
    assert slug("scikit-learn: `tinysweep.sklearn`") == "scikit-learn-tinysweepsklearn"
    assert slug("report.md and the plots") == "reportmd-and-the-plots"
    assert slug("`Results.summary`: answers over replicates") == \
        "resultssummary-answers-over-replicates"


# ---- code blocks run -------------------------------------------------------------------------
PYTHON_PAGES = [p for p in DOCS if any(m != NOT_RUN for _, m in blocks(p, "python"))]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=name)
def test_python_blocks_run_as_written(page, tmp_path, monkeypatch, capsys):
    in_sandbox(tmp_path, monkeypatch)
    scope = run_python(page)
    out = capsys.readouterr().out
    checks = {
        "getting-started.md": lambda: ("final_train_loss" in out and "final_train_accuracy" in out
                                       and "the setup" in out
                                       and scope["search"].best_score_ > 0.9
                                       and len(scope["search"].results_.table) == 40
                                       and (tmp_path / "runs/heart/data.npz").is_file()
                                       and (tmp_path / "runs/copy/results.csv").is_file()),
        "diagnose.md": lambda: ("target_broadcast reproduces what you saw" in out
                                and "[broadcast_loss]" in out),
        "schedules.md": lambda: all(s in out for s in ("halving", "hyperband", "pbt"))
                                and "parent" in out,
        "results.md": lambda: ((tmp_path / "runs/api-copy/results.csv").is_file()
                               and len(scope["res"].table) == 6),
    }
    assert checks.get(page.name, lambda: True)(), out[-2000:]


def test_shell_blocks_marked_run_run(tmp_path, monkeypatch):
    """The guide's shell blocks marked `<!-- run -->` (the README's: test_readme.py)."""
    marked = [code for page in DOCS for code, marker in blocks(page, "bash") if marker == RUN]
    in_sandbox(tmp_path, monkeypatch)
    for code in marked:
        run_shell(code)


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_yaml_blocks_are_valid_configs(page, tmp_path):
    from tinysweep.trainer.spec.config import parse_config
    for code, marker in blocks(page, "yaml"):
        if marker != NOT_RUN:
            parse_config(yaml.safe_load(code), base_dir=ROOT / "examples")


def test_markers_are_few():
    """`<!-- not run -->` is for fragments only: most blocks run."""
    python = [m for p in PAGES for _, m in blocks(p, "python")]
    assert python.count(NOT_RUN) <= 2, "more fragments than runnable examples?"


# ---- the config reference is the source of truth ---------------------------------------------
def table_rows(page: Path, section: str) -> dict[str, list[str]]:
    """The rows of the markdown tables under the heading ``section`` of ``page`` (up to the
    next heading of its level or above), keyed by their first cell without backticks."""
    text = page.read_text()
    level = section.split(" ", 1)[0]
    body = text.split(f"\n{section}\n", 1)[1]
    body = re.split(rf"\n#{{1,{len(level)}}} ", body, maxsplit=1)[0]
    rows = {}
    for line in body.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows.setdefault(cells[0].strip("`"), cells)
    return rows


def test_the_config_reference_names_every_key_and_default():
    from tinysweep.trainer.spec import config as cfg
    from tinysweep.trainer.spec.data import _PARAMS
    page = ROOT / "docs/config.md"
    text = page.read_text()
    train = table_rows(page, "## `train`")
    for f in dataclasses.fields(cfg.RunParams):
        assert f.name in train, f"train.{f.name}: no row in docs/config.md"
        default = train[f.name][2]
        if f.name in cfg.MODEL_PARAMS:     # hidden, activation: from the model section
            assert default == f"`model.{f.name}`", f.name
            model_default = table_rows(page, "## `model`")[f.name][2]
            assert model_default == f"`{list(f.default) if f.default == () else f.default}`"
            continue
        if f.default is None:              # weight_decay, step_size: said in words
            continue
        if isinstance(f.default, bool):
            assert default == str(f.default).lower(), f.name
        elif isinstance(f.default, str):
            assert default == f"`{f.default}`", f.name
        else:
            assert float(default.split()[0]) == f.default, f.name
        for choice in cfg.run_field(f.name)["choices"]:
            assert f"`{choice}`" in train[f.name][1], f"{f.name}: {choice}"
    for section, keys in cfg._SECTIONS.items():
        for key in keys:
            assert f"`{key}`" in text, f"{section or 'top level'}: {key}"
    sources = table_rows(page, "### Data sources and their parameters")
    documented = " ".join(" ".join(cells) for cells in sources.values())
    for source, params in _PARAMS.items():
        if source == "memory":
            continue
        assert source in documented, source
        row = next(cells for key, cells in sources.items() if source in key)
        for param in params:
            assert f"`{param}`" in row[1], f"data.params.{param} of {source}"
    for key in ("rungs", "keep", "min_epochs", "eta", "interval", "quantile", "perturb",
                "resample_probability", "folds", "repeats", "shuffle_seed"):
        assert f"{key}`" in text, key


# ---- the doctor's example reads the same everywhere -----------------------------------------
def doctor_example(page: Path) -> str:
    text = page.read_text()
    return text.split("$ tinysweep doctor examples/line_bug.py\n", 1)[1].split("```", 1)[0]


def test_the_doctor_example_is_the_readmes():
    """tests/test_doctor.py checks the README's copy against what the doctor prints."""
    assert doctor_example(ROOT / "docs/diagnose.md") == doctor_example(ROOT / "README.md")
