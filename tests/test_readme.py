"""The README and the docs pages: links resolve, the README stays a front door, no page speaks of how the
project was built, and every command the README shows runs as written (composed, never trained)."""

import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.values import validate

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, REPO / "BENCHMARKS.md", *sorted((REPO / "docs").rglob("*.md"))]
README_MAX_LINES = 320

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
# What a page must not say: the project is read by users, who have no tracker of how it was built.
BUILD_HISTORY = re.compile(r"\bissue\s*#?\s*\d+|\(issue", re.I)
TEXT_SUFFIXES = {".md", ".txt", ".csv", ".json", ".yaml", ".yml", ".py", ".toml", ".cfg", ".ini"}

# The commands that compose a Hydra config from `key=value` arguments, and which config.
HYDRA_COMMANDS = {
    "train": "train",
    "summary": "train",
    "evaluate": "evaluate",
    "predict": "predict",
    "export": "export",
    "inside": "inside",
}
COMMAND = re.compile(r"python -m lenet_pl\.(\w+)")
MAKE_TRAIN = re.compile(r"make train ARGS=\"([^\"]*)\"")


def _prose(text: str) -> str:
    """The page without its code: fenced blocks and code spans, where brackets are code, not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, without punctuation, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for match in HEADING.finditer(FENCE.sub("", page.read_text())):
        slug = _slug(match.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(_prose(page.read_text()))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I)  # http:, https:, mailto:
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor in {resolved.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in relative_links(README)}
    pages = [p for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not pages, f"docs pages the README does not link to: {[str(p.relative_to(REPO)) for p in pages]}"


def test_the_readme_stays_a_front_door():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move the details to a page under docs/"


def test_the_design_page_names_every_module_by_its_place_in_the_layout():
    """docs/design.md has one line per module: `model.py` at the top, `sweeps/jobs.py`, `runtime/cli.py`."""
    design = (REPO / "docs" / "design.md").read_text()
    package = REPO / "src" / "lenet_pl"
    modules = [p.relative_to(package).as_posix() for p in sorted(package.rglob("*.py")) if p.name != "__init__.py"]
    missing = [m for m in modules if f"`{m}`" not in design]
    assert not missing, f"docs/design.md does not describe: {missing}"


def _shipped_text_files() -> list[Path]:
    files = [README, REPO / "BENCHMARKS.md", REPO / "pyproject.toml"]
    for folder in ("docs", "conf", "src"):
        files += [p for p in sorted((REPO / folder).rglob("*")) if p.is_file() and p.suffix in TEXT_SUFFIXES]
    return files


def test_no_page_config_or_source_speaks_of_the_issues_it_was_built_from():
    hits = []
    for path in _shipped_text_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if BUILD_HISTORY.search(line):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert not hits, "build-history wording:\n" + "\n".join(hits)


# ---------------------------------------------------------------------------------------------
# The commands the pages show


def _code_lines(text: str) -> list[str]:
    """Every line of a fenced block, and every code span: where a page shows commands."""
    lines = []
    for block in FENCE.finditer(text):
        lines += block.group(0).splitlines()[1:-1]
    lines += [span.group(2) for span in CODE_SPAN.finditer(FENCE.sub("", text))]
    return lines


def _placeholder(word: str) -> bool:
    """<sweep dir>, RUN_DIR..., seed=S, optimizer.lr=LR: a value the reader fills in."""
    value = word.partition("=")[2] if "=" in word and not word.startswith("-") else word
    return any(mark in word for mark in "<>") or "..." in word or bool(re.fullmatch(r"[A-Z][A-Z_]*", value))


def _arguments(rest: str) -> list[str]:
    """The arguments after a command, up to a comment, a pipe or the next command. A placeholder is
    dropped (with the option it belongs to), except `key=<...>`, which keeps its key with a stand-in value."""
    try:
        words = shlex.split(rest, comments=True)
    except ValueError:  # an unbalanced quote: take the words as they are
        words = rest.split()
    args: list[str] = []
    for word in words:
        if word in ("&&", "||", "|", ";", "\\"):
            break
        key, equals, value = word.partition("=")
        if equals and value.startswith("<") and not key.startswith("-"):
            args.append(f"{key}=placeholder")
        elif not _placeholder(word):
            args.append(word)
        elif args and args[-1].startswith("--"):
            args.pop()  # `--tta threads=T`: the option goes with its value
    return args


def page_commands(page: Path) -> list[tuple[str, list[str]]]:
    """(module, arguments) of every `python -m lenet_pl.<module>` and `make train ARGS="..."` on a page."""
    commands = []
    for line in _code_lines(page.read_text()):
        for match in MAKE_TRAIN.finditer(line):
            commands.append(("train", _arguments(match.group(1))))
        for match in COMMAND.finditer(line):
            rest = line[match.end() :]
            following = COMMAND.search(rest)
            commands.append((match.group(1), _arguments(rest[: following.start()] if following else rest)))
    return commands


def _params(pages: list[Path], skip: list[Path] = ()) -> list:
    """One test per distinct command (the first page that shows it names it), leaving out `skip`'s."""
    seen = {(module, tuple(arguments)) for page in skip for module, arguments in page_commands(page)}
    params = []
    for page in pages:
        for module, arguments in page_commands(page):
            if (module, tuple(arguments)) not in seen:
                seen.add((module, tuple(arguments)))
                name = f"{page.relative_to(REPO)}: {module} {' '.join(arguments)}"
                params.append(pytest.param(module, arguments, id=name[:150]))
    return params


def _first_of_each_sweep(overrides: list[str]) -> list[str]:
    """A multirun's overrides as its first job gets them: `a=x,y` -> `a=x` (one config to compose)."""
    parser = OverridesParser.create()
    out = []
    for text in overrides:
        (override,) = parser.parse_overrides([text])
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()))
            text = f"{override.get_key_element()}={first}"
        out.append(text)
    return out


def check_command(module: str, arguments: list[str]) -> None:
    """`python -m lenet_pl.<module> <arguments>` names a command, and its config composes and validates."""
    source = REPO / "src" / "lenet_pl" / f"{module}.py"
    assert source.is_file(), f"python -m lenet_pl.{module}: there is no src/lenet_pl/{module}.py"
    assert '__name__ == "__main__"' in source.read_text(), f"lenet_pl.{module} is a module, not a command"
    if any(a.startswith(("--config-dir", "hydra.searchpath")) for a in arguments):
        return  # composes with a folder of the reader's own
    if module == "bench":
        if "--help" in arguments:
            return
        from lenet_pl.bench import parse_args

        args = parse_args(arguments)
        for overrides in (args.overrides, args.tta_overrides):
            validate(compose_config(overrides))
        return
    if module not in HYDRA_COMMANDS:
        return  # report, error_per_pass: argparse commands that read folders, nothing to compose
    overrides = _first_of_each_sweep([a for a in arguments if a not in ("-m", "--multirun")])
    cfg = compose_config(overrides, config_name=HYDRA_COMMANDS[module])
    if HYDRA_COMMANDS[module] == "train":
        validate(cfg)
    elif arguments:  # a bare `python -m lenet_pl.evaluate` in prose names the command, it does not run it
        missing = [key for key in cfg if OmegaConf.is_missing(cfg, key)]
        assert not missing, f"python -m lenet_pl.{module} {' '.join(arguments)}: {missing} required"


def test_the_readme_shows_its_commands():
    modules = {module for module, _ in page_commands(README)}
    assert {"train", "summary", "evaluate", "predict", "export", "inside", "report"} <= modules


@pytest.mark.parametrize(("module", "arguments"), _params([README]))
def test_every_readme_command_names_a_command_and_its_overrides_compose(module, arguments):
    check_command(module, arguments)


@pytest.mark.parametrize(("module", "arguments"), _params(PAGES[1:], skip=[README]))
def test_every_docs_command_names_a_command_and_its_overrides_compose(module, arguments):
    check_command(module, arguments)
