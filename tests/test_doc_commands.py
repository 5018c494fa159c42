"""Every shell command in README.md and docs/*.md stays parseable: the scripts and repository files it names exist,
and every `--option` it passes is one its script's argparse parser accepts.

What is read: the fenced code blocks marked bash, sh or shell, of README.md and of every docs/*.md (pages added later
are picked up). Lines joined at a trailing backslash, `# comments` dropped, then split into simple commands at
`&&`, `||`, `;` and `|`; leading `NAME=value` assignments are skipped. Commands checked:
- `python X.py ...` (any `python` path): X.py exists, and its options are checked against X.py's parser;
  `python -m ...` and `python -c ...` are not checked;
- `bash X.sh ...`: X.sh exists; when X.sh runs exactly one of the repository's Python scripts (`inference.sh`:
  sample_video.py; `finetune_*.sh`: train_video.py), the options go to that script's parser;
- `torchrun ... X.py ...` and `deepspeed ... X.py ...`: the launcher's own options (before X.py) are not checked;
- any other program (printf, tensorboard, pip, ...) is not checked.
A script's options are read from its own parser: the script runs in this process with its command line replaced by
a probe, and the first parser asked to parse the probe is recorded (nothing after the parse runs; argv, sys.path,
the environment, the folder, torch's thread count and RNG are put back); once per script.
Placeholder rule: a word holding `<` or `>`, `...`, or starting with `/path/to/` stands for the user's own value and
is not checked. Paths: a word whose first path component is a top-level folder or file the repository tracks
(`configs/`, `tools/`, `inference.sh`, ...) must exist; other paths (generated folders such as `tiny_weights/`) are
not checked. Optional syntax `[--option value]` is read without its brackets; `--option=value` as `--option`.
"""

import argparse
import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(bash|sh|shell)\s*\n(.*?)^```", re.MULTILINE | re.DOTALL)
LAUNCHERS = ("torchrun", "deepspeed")
PROBE = "--doc-command-probe"


def pages() -> list[Path]:
    return [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))


def tracked_roots() -> set[str]:
    """First path components of the repository's tracked files (`git ls-files`)."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return {line.split("/", 1)[0] for line in listed.splitlines() if line}


def commands(page: Path) -> list[tuple[str, list[str]]]:
    """(where, words) of each simple command in the page's shell blocks."""
    text = page.read_text(encoding="utf-8")
    found = []
    for block in FENCE.finditer(text):
        first_line = text[:block.start(2)].count("\n") + 1
        body = re.sub(r"\\\n", " ", block.group(2))  # continuation lines
        for offset, line in enumerate(body.splitlines()):
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split, lexer.commenters = True, "#"
            current: list[str] = []
            for word in list(lexer) + [";"]:
                if word and set(word) <= set(";&|"):
                    if current:
                        found.append((f"{page.relative_to(REPO)}:{first_line + offset}", current))
                    current = []
                else:
                    current.append(word)
    return found


def is_placeholder(word: str) -> bool:
    return "<" in word or ">" in word or "..." in word or word.startswith("/path/to/")


def target(words: list[str]) -> tuple[str | None, list[str]]:
    """(the repository script the command runs, or None; the words passed to it)."""
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words = words[1:]  # NAME=value
    if not words:
        return None, []
    program = os.path.basename(words[0])
    if program.startswith("python") and len(words) > 1 and not words[1].startswith("-"):
        return words[1], words[2:]
    if program == "bash" and len(words) > 1:
        return words[1], words[2:]
    if program in LAUNCHERS:
        scripts = [i for i, word in enumerate(words) if word.endswith(".py")]
        if scripts:
            return words[scripts[0]], words[scripts[0] + 1:]
    return None, []


def script_run_by(shell_script: Path) -> str | None:
    """The one repository Python script a shell script runs (its arguments go there), or None."""
    named = set(re.findall(r"([\w/.-]+\.py)\b", shell_script.read_text(encoding="utf-8")))
    scripts = {os.path.basename(name) for name in named if (REPO / os.path.basename(name)).is_file()}
    return scripts.pop() if len(scripts) == 1 else None


class Probed(BaseException):
    """Raised by the probe's parse: a BaseException, so that the script's `except Exception` does not catch it."""

    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__()
        self.parser = parser


OPTIONS: dict[str, set[str]] = {}


def options_of(script: str) -> set[str]:
    """The option strings of the parser `script` parses its command line with (cached per script)."""
    if script in OPTIONS:
        return OPTIONS[script]
    originals = (argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args)
    saved = (list(sys.argv), list(sys.path), dict(os.environ), os.getcwd(), torch.get_num_threads(),
             torch.random.get_rng_state())

    def probing(original):
        def parse(self, args=None, namespace=None):
            given = sys.argv[1:] if args is None else list(args)
            if given == [PROBE]:
                raise Probed(self)
            return original(self, args, namespace)
        return parse

    argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = map(probing, originals)
    sys.argv = [str(REPO / script), PROBE]
    try:
        runpy.run_path(str(REPO / script), run_name="__main__")
        raise AssertionError(f"{script} parsed no command line with argparse")
    except Probed as probed:
        OPTIONS[script] = set(probed.parser._option_string_actions)
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = originals
        sys.argv, sys.path[:] = saved[0], saved[1]
        os.environ.clear()
        os.environ.update(saved[2])
        os.chdir(saved[3])
        torch.set_num_threads(saved[4])  # what a script's top level may change, for the tests after this one
        torch.random.set_rng_state(saved[5])
    return OPTIONS[script]


ALL_COMMANDS = [command for page in pages() for command in commands(page)]


def test_the_pages_hold_commands():
    """The reader sees the README's two commands and the pages' blocks (a broken fence pattern would find none)."""
    where = {place.split(":")[0] for place, _ in ALL_COMMANDS}
    assert "README.md" in where and len(where) >= 2
    assert target(ALL_COMMANDS[0][1])[0] == "tools/setup_env.sh"


@pytest.mark.parametrize("where, words", ALL_COMMANDS, ids=[place for place, _ in ALL_COMMANDS])
def test_command_names_existing_files_and_accepted_options(where, words):
    roots = tracked_roots()
    for word in (w.strip("[]") for w in words):
        if word.startswith("-") or is_placeholder(word) or "=" in word:
            continue
        first = word.split("/", 1)[0]
        if first in roots and ("/" in word or Path(word).suffix):
            assert (REPO / word).exists(), f"{where}: {word} does not exist"
    script, passed = target(words)
    if script is None or is_placeholder(script):
        return
    assert (REPO / script).is_file(), f"{where}: {script} does not exist"
    if script.endswith(".sh"):
        script = script_run_by(REPO / script)
    flags = [w.strip("[]").split("=", 1)[0] for w in passed if w.strip("[]").startswith("--")]
    if script is None or not flags:
        return
    accepted = options_of(script)
    unknown = [flag for flag in flags if flag not in accepted]
    assert not unknown, f"{where}: {script} does not accept {unknown}"
