"""Every shell command in README.md's ```bash blocks runs here, so that no README line can rot.

A command either runs fully or, where it cannot run here (network, GPU, data not present, a server
that runs until stopped, minutes of CPU), as ``<program> [<sub-command>] --help``; for the project's
own programs every long flag the README line uses must then appear in that help, so a renamed flag
fails too. ``RULES`` below is the explicit table of which command runs how, and why. A command that
no rule covers fails the test: add a rule rather than letting a line go unchecked.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

RUN, HELP, SKIP = "run", "help", "skip"
TIMEOUT_S = {RUN: 240, HELP: 120}
SHELL_OPERATORS = {"&&", "||", ";", "&", "|", "(", ")"}
OWN_MODULES = ("streamdet", "offline")

# (command head, mode, why): the head is the program and, for the project's CLIs, its sub-command;
# the first rule whose head starts the command wins, "*" matches any sub-command of that program.
RULES: tuple[tuple[str, str, str], ...] = (
    ("pytest", SKIP, "the test command itself: running it from a test would recurse"),
    ("pip install", HELP, "installs into the environment that runs these tests; the tests passing is the proof"),
    ("streamdet demo", RUN, "the main job: must work offline on a fresh install, in under two minutes"),
    ("streamdet serve", HELP, "serves until stopped (tests/streamdet/service/test_cli_serve.py runs it)"),
    ("streamdet send", HELP, "needs a running service and the named files"),
    ("streamdet subscribe", HELP, "waits for events until stopped"),
    ("streamdet whip-send", HELP, "needs a running service and the named file"),
    ("streamdet bench", HELP, "a benchmark: minutes of CPU, and most forms need a pulled CM"),
    ("streamdet *", HELP, "any other sub-command: its flags must exist"),
    ("offline pull", HELP, "downloads the authors' checkpoints (network)"),
    ("offline download", HELP, "downloads a data set (network)"),
    ("offline evaluate", HELP, "needs a pulled CM and test sets not present here"),
    ("offline export", HELP, "needs a pulled CM; ONNX/TensorRT exports take minutes"),
    ("offline prepare-features", HELP, "needs XLS-R weights and the training data"),
    ("offline train", HELP, "hours of training on data not present here"),
    ("offline *", HELP, "any other sub-command: its flags must exist"),
    ("python *.py", HELP, "benchmarks and scripts run for minutes or need a GPU"),
    ("curl", SKIP, "asks a running service; tests/streamdet/service test its HTTP endpoints"),
    ("docker", SKIP, "needs a Docker engine and a GPU; tests/offline/export/test_docker.py checks the compose file"),
    ("tritonserver", SKIP, "needs Triton Inference Server; tests/streamdet/scoring starts one where available"),
    ("sleep", SKIP, "shell plumbing"),
    ("kill", SKIP, "shell plumbing"),
    ("cd", SKIP, "shell plumbing"),
    ("export", SKIP, "shell plumbing"),
)


@dataclass(frozen=True)
class Command:
    text: str
    """The README's words for this command (one segment of a line split at shell operators)."""
    argv: tuple[str, ...]
    line: int


def bash_blocks(markdown: str) -> list[tuple[int, str]]:
    """(first line number, body) of every ```bash fenced block."""
    blocks = []
    for match in re.finditer(r"^```bash[ \t]*\n(.*?)^```", markdown, flags=re.S | re.M):
        blocks.append((markdown.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


def readme_commands(markdown: str) -> list[Command]:
    commands = []
    for first_line, body in bash_blocks(markdown):
        logical = re.sub(r"\\\n", " ", body)  # join continuation lines
        for offset, line in enumerate(logical.splitlines()):
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            segment: list[str] = []
            for token in [*lexer, ";"]:
                if token in SHELL_OPERATORS or set(token) <= set(";&|()"):
                    if segment:
                        commands.append(Command(shlex.join(segment), tuple(segment), first_line + offset))
                    segment = []
                else:
                    segment.append(token)
    return commands


def program_of(argv: tuple[str, ...]) -> tuple[str, list[str]]:
    """(program, its arguments) with ``python -m M``, ``torchrun ... -m M`` and ``python FILE.py``
    normalised: the program is then ``M`` or the script path."""
    head, rest = argv[0], list(argv[1:])
    if Path(head).name in ("python", "python3", "torchrun") and "-m" in rest:
        index = rest.index("-m")
        return rest[index + 1], rest[index + 2:]
    if Path(head).name in ("python", "python3") and rest and rest[0].endswith(".py"):
        return rest[0], rest[1:]
    return head, rest


def head_of(argv: tuple[str, ...]) -> tuple[str, str]:
    """(program, sub-command or '') of a command."""
    program, args = program_of(argv)
    if program in OWN_MODULES or program in ("pip",):
        words = [a for a in args if not a.startswith("-")]
        return program, words[0] if words else ""
    return program, ""


def rule_for(argv: tuple[str, ...]) -> tuple[str, str]:
    program, sub = head_of(argv)
    for head, mode, why in RULES:
        rule_program, _, rule_sub = head.partition(" ")
        if rule_program == "python" and rule_sub == "*.py":
            if program.endswith(".py"):
                return mode, why
            continue
        if rule_program == program and rule_sub in ("", "*", sub):
            return mode, why
    raise AssertionError(f"no rule in tests/test_readme.py's RULES for README command {shlex.join(argv)!r}")


def long_flags(args: list[str]) -> list[str]:
    """The ``--flag`` names a command uses (``--a=b`` → ``--a``; ``[--config`` → ``--config``)."""
    flags = []
    for arg in args:
        arg = arg.strip("[]")
        if arg.startswith("--") and len(arg) > 2:
            flags.append(arg.split("=", 1)[0])
    return flags


def help_argv(argv: tuple[str, ...]) -> list[str]:
    program, sub = head_of(argv)
    if program in OWN_MODULES:
        return [sys.executable, "-m", program, *([sub] if sub else []), "--help"]
    if program.endswith(".py"):
        return [sys.executable, program, "--help"]
    if program == "pip":
        return [sys.executable, "-m", "pip", *([sub] if sub else []), "--help"]
    return [program, "--help"]


def run_argv(argv: tuple[str, ...]) -> list[str]:
    program, args = program_of(argv)
    if program in OWN_MODULES:
        return [sys.executable, "-m", program, *args]  # the interpreter running the tests
    return list(argv)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDET_") or k == "STREAMDET_REFERENCE_DATA"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


COMMANDS = readme_commands(README.read_text())


def test_readme_has_commands_and_runs_the_main_job() -> None:
    assert COMMANDS, "no ```bash blocks found in README.md"
    assert any(rule_for(c.argv)[0] == RUN and head_of(c.argv) == ("streamdet", "demo") for c in COMMANDS)


def test_the_parser_splits_shell_lines() -> None:
    text = "```bash\npip install -e . && streamdet demo   # main job\noffline pull x \\\n  --out y\n```\n"
    assert [c.argv for c in readme_commands(text)] == [
        ("pip", "install", "-e", "."), ("streamdet", "demo"), ("offline", "pull", "x", "--out", "y")]
    assert long_flags(["[--config", "x]", "--serve-arg=--threads=1", "-e"]) == ["--config", "--serve-arg"]
    assert head_of(("torchrun", "--nproc_per_node=4", "-m", "offline", "train", "--config", "F")) == (
        "offline", "train")


@pytest.mark.parametrize("command", COMMANDS, ids=[f"L{c.line}:{c.text[:60]}" for c in COMMANDS])
def test_readme_command(command: Command, tmp_path: Path) -> None:
    mode, why = rule_for(command.argv)
    if mode == SKIP:
        pytest.skip(f"{command.text!r}: {why}")
    if mode == RUN:
        # A scratch directory, so that default output folders (./streamdet-demo) land there.
        argv, cwd = run_argv(command.argv), tmp_path
    else:
        argv, cwd = help_argv(command.argv), REPO
    done = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S[mode])
    assert done.returncode == 0, (
        f"README line {command.line}: {command.text!r} ran as {shlex.join(argv)} ({mode}: {why}) and exited "
        f"{done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    program, args = program_of(command.argv)
    if mode == HELP and (program in OWN_MODULES or program.endswith(".py")):
        missing = [f for f in long_flags(args) if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", done.stdout)]
        assert not missing, f"README line {command.line}: {command.text!r} uses {missing}, not in {shlex.join(argv)}"
