"""Docs that stay true (issue 28): every repository path that README.md and docs/ name exists,
every `invoke` and `nox` command they show parses through the real parsers (invoke's, with
this project's tasks; nox's own command line, with this noxfile's sessions), each user guide
opens with an "In brief", and no paragraph runs over 800 characters."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.lib.project import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
EVIDENCE = REPO / "docs" / "evidence"
# Prose: the evidence folders' copies of run reports (summary.md, written by the runs) are records, not prose.
PROSE = [d for d in DOCS if not (d.is_relative_to(EVIDENCE) and d.name != "README.md")]
GENERATED = {REPO / "docs" / "reference" / "gpu-coverage.md", REPO / "docs" / "reference" / "kernels-table.md"}
GUIDES = sorted((REPO / "docs" / "user-guides").glob("*.md"))
TOP = {p.name for p in REPO.iterdir()} - {".venv", ".git", "build"}
OUTPUTS = ("build/", "reports/", "compose/data", ".gpu/")  # written by the commands and the GPU scripts, git-ignored
COMMIT = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
PATH = re.compile(r"[\w.\-]+(?:/[\w.\-]+)+/?")
MAX_PARAGRAPH = 800


def _rel(doc: Path) -> str:
    return str(doc.relative_to(REPO))


def _without_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def paragraphs(text: str) -> list[str]:
    """Blocks between blank lines, outside code fences; a list item or table row is its own."""
    found = []
    for block in re.split(r"\n\s*\n", _without_code(text)):
        found += [p for p in re.split(r"\n(?=\s*(?:[-*] |\d+\. |\|))", block) if p.strip()]
    return found


def named_paths(doc: Path) -> list[tuple[str, str]]:
    """(path, its paragraph) for each repository path in a code span or a relative link."""
    found = []
    for para in paragraphs(doc.read_text(encoding="utf-8")):
        for m in re.finditer(r"`([^`\n]+)`|\]\(([^)\s#]+)(?:#[^)]*)?\)", para):
            if m[2]:
                if not m[2].startswith(("http:", "https:", "mailto:")):
                    found.append(((doc.parent / m[2]).resolve().relative_to(REPO).as_posix(), para))
            elif PATH.fullmatch(tok := m[1].strip()) and tok.split("/")[0] in TOP:
                found.append((tok.rstrip("/"), para))
    return found


def test_every_repository_path_the_docs_name_exists():
    missing = []
    for doc in DOCS:
        for path, para in named_paths(doc):
            if path.startswith(OUTPUTS) or (REPO / path).exists() or (REPO / path).with_suffix(".py").is_file():
                continue  # (tests/lib/pinfile.wheel: a name inside a module)
            # A path of the past, named with the commit that holds it: in its paragraph, or
            # anywhere in an evidence record (the record of runs made at that commit).
            if COMMIT.search(doc.read_text(encoding="utf-8") if doc.is_relative_to(EVIDENCE) else para):
                continue
            missing.append(f"{_rel(doc)}: {path}")
    assert not missing, "paths that do not exist (name the commit that holds them, or fix them):\n" + "\n".join(missing)


# --------------------------------------------------------------------------- commands


def shown_commands(prefix: str) -> list[tuple[str, str]]:
    """(doc, command line) for each `prefix ...` in a code span or at the start of a code-block
    line; a synopsis (`[--flag]`, `A|B`, `…`) is a usage pattern, checked flag by flag instead."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        prose = _without_code(text)
        # a span shown as what is refused ("`invoke bump -d` is refused") is not a command to run
        spans = [m[1] for m in re.finditer(r"`([^`\n]+)`([^.`]{0,40})", prose)
                 if not re.search(r"\b(?:is refused|are refused|rejects|exit 2)", m[2])]
        blocks = [ln.strip() for b in re.findall(r"^```.*?^```", text, re.S | re.M)
                  for ln in re.sub(r"\\\n\s*", " ", b).splitlines()]  # continued lines joined
        for line in spans + blocks:
            if re.search(r"\d ms\b|\(\d+ runs\)", line):  # a timing printed by a benchmark, not a command
                continue
            line = re.sub(r"^(?:\$ |(?:\.venv/bin/|uv run )(?=invoke|nox))", "", line.strip())
            line = re.split(r"\s+(?:#|&&|\|\||;|\|(?= )|→)\s*", line)[0].strip()
            if line == prefix or line.startswith(prefix + " "):
                found.append((_rel(doc), line))
    return sorted(set(found))


def is_synopsis(line: str) -> bool:
    """A usage pattern (``[--flag]``, ``A|B``, ``…``) or a flow (``invoke bake → images``)."""
    return bool(re.search(r"[\[\]…|→]|\.\.\.", line))


@cache
def invoke_parsers():
    from invoke import Collection, Program

    sys.path.insert(0, str(REPO))
    try:
        import tasks
    finally:
        sys.path.remove(str(REPO))
    collection = Collection.from_module(tasks)
    return Program(namespace=collection), collection


def parse_invoke(argv: list[str]) -> list:
    """argv (after ``invoke``) through invoke's own parser, as ``invoke`` parses it: core flags
    first, then tasks; the words after ``--`` are the remainder."""
    from invoke.parser import Parser

    program, collection = invoke_parsers()
    if "--" in argv:
        argv = argv[: argv.index("--")]
    core = Parser(initial=program.initial_context, ignore_unknown=True).parse_argv(argv)
    return list(Parser(contexts=collection.to_contexts()).parse_argv(core.unparsed))


def task_flags(name: str) -> set[str]:
    _, collection = invoke_parsers()
    context = next(c for c in collection.to_contexts() if c.name == name)
    return set(context.flag_names()) | {"-h", "--help"}


INVOKE = shown_commands("invoke")
NOX = shown_commands("nox")


def test_the_docs_show_commands():
    assert len(INVOKE) > 20 and len(NOX) > 10


@pytest.mark.parametrize("doc, line", INVOKE)
def test_every_invoke_command_shown_parses(doc, line):
    from invoke.exceptions import ParseError

    words = shlex.split(line.replace("…", ""))[1:]
    if is_synopsis(line):  # every flag it names is the task's
        task = next((w for w in words if not w.startswith("-")), None)
        if task is None:
            return
        flags = {w.split("=")[0] for w in re.findall(r"(?<![\w])--?[a-z][\w-]*", line)}
        unknown = flags - task_flags(task) - {"--list", "-l"}
        assert not unknown, f"{doc}: `{line}`: {task} has no {', '.join(sorted(unknown))}"
        return
    tasks = {c.name for c in invoke_parsers()[1].to_contexts()}
    if words[1:] in (["--help"], ["-h"]) or words[:1] in (["--help"], ["-h"]) and len(words) == 2:
        task = words[0] if words[1:] in (["--help"], ["-h"]) else words[1]  # invoke's own help for a task
        assert task in tasks, f"{doc}: `{line}`: no such task"
        return
    try:
        parsed = parse_invoke(words)
    except ParseError as exc:
        pytest.fail(f"{doc}: `{line}` does not parse: {exc}")
    assert parsed or words in (["--list"], []), f"{doc}: `{line}` names no task"


@cache
def nox_accepts(argv: tuple[str, ...]) -> str | None:
    """None when nox's own command line takes ``argv`` (its sessions from this noxfile), else why."""
    cmd = [sys.executable, "-m", "nox", *argv, "--list", "--noxfile", str(REPO / "noxfile.py")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


@pytest.mark.parametrize("doc, line", NOX)
def test_every_nox_command_shown_parses(doc, line):
    words = shlex.split(re.sub(r"\[.*?\]|…", "", line))[1:]
    words = words[: words.index("--")] if "--" in words else words
    words = [w for w in words if not w.startswith("validate_*")]
    skip = {"-f", "--noxfile"}  # the test names the noxfile itself
    argv = [w for i, w in enumerate(words) if w not in skip and (i == 0 or words[i - 1] not in skip)]
    why = nox_accepts(tuple(argv))
    assert why is None, f"{doc}: `{line}`: {why}"


# --------------------------------------------------------------------------- shape


@pytest.mark.parametrize("doc", GUIDES, ids=lambda d: d.name)
def test_each_guide_opens_with_in_brief(doc):
    head = _without_code(doc.read_text(encoding="utf-8")).split("\n## ", 1)[0]
    assert re.search(r"^\*\*In brief\.?\*\*|^## In brief", doc.read_text(encoding="utf-8")[:3000], re.M), (
        f"{_rel(doc)}: no 'In brief' at the top")
    assert len(head) < 3000


def test_no_paragraph_runs_over_800_characters():
    long = [f"{_rel(d)}: {len(p)} characters: {p[:80]!r}…" for d in PROSE
            for p in paragraphs(d.read_text(encoding="utf-8"))
            if len(p) > MAX_PARAGRAPH and not p.lstrip().startswith("|")]  # a table row is not a paragraph
    assert not long, "\n".join(long)


def test_a_short_flag_the_docs_pair_with_a_long_one_is_that_option_of_some_task():
    """`--dry-run`, `-d` in an options table must be true: some task has both (invoke owns -d)."""
    _, collection = invoke_parsers()
    pairs = [set(c.flag_names()) for c in collection.to_contexts()]
    wrong = []
    for doc in DOCS:
        for m in re.finditer(r"^\|\s*`(--[\w-]+)[^`]*`,\s*`(-\w)`", doc.read_text(encoding="utf-8"), re.M):
            if not any({m[1], m[2]} <= flags for flags in pairs):
                wrong.append(f"{_rel(doc)}: {m[1]}, {m[2]}")
    assert not wrong, "short flags no task takes for that option:\n" + "\n".join(wrong)
