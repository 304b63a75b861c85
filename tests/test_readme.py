"""The README's tour is run, not trusted: every block of it, in order, in a fresh folder.

Conventions the README follows so that it can be run:

- A ``console`` block holds commands (``$ ...``) each followed by the lines it
  prints. Every shown line must appear in the command's output, in order;
  dates, times, hashes, durations and report ids may differ, and ``…`` stands
  for any text. The exit status follows from the first line shown:
  ``denied:`` is 3, ``FAILED`` is 1, ``error:`` is 2, anything else 0.
  ``$ export NAME=value`` sets a variable for the commands after it.
- A ``python`` block runs as a script in the tour's folder and must exit 0.
- A block whose info string names a file (```` ```toml auditml.toml ````)
  writes that file; other blocks are there to be read.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
WILD = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?Z?)?)"
    r"|(?P<hex>\b[0-9a-f]{8,}\b|\b[0-9a-f]{4,}(?=…))"
    r"|(?P<seconds>\b\d+\.\d+s\b)"
    r"|(?P<report>\bAR-[0-9A-Z]+(?:-[0-9A-Z]+)*)"
    r"|(?P<any>…)"
)
WILDCARDS = {
    "time": r"\d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?Z?)?",
    "hex": r"[0-9a-f]+",
    "seconds": r"\d+\.\d+s",
    "report": r"AR-[0-9A-Z]+(?:-[0-9A-Z]+)*",
    "any": r".*?",
}


@dataclass
class Step:
    """One thing the tour does: a command with the lines it shows, a script, or a file."""

    kind: str
    text: str
    shown: list[str] = field(default_factory=list)
    name: str = ""


def tour_steps(readme: str) -> list[Step]:
    """Return the tour's steps in the order the README shows them."""
    start = readme.index("## A five-minute tour")
    end = readme.index("\n## ", start + 1)
    steps: list[Step] = []
    for match in BLOCK.finditer(readme[start:end]):
        lang, info, body = match.group(1), match.group(2).strip(), match.group(3)
        if lang == "console":
            for line in body.splitlines():
                if line.startswith("$ "):
                    steps.append(Step("command", line[2:]))
                elif steps and steps[-1].kind == "command" and line.strip():
                    steps[-1].shown.append(line)
        elif lang == "python":
            steps.append(Step("python", body))
        elif info:
            steps.append(Step("file", body, name=info))
    return steps


def pattern(line: str) -> re.Pattern[str]:
    """Return a regex for a shown line: dates, hashes, durations and ids as wildcards."""
    text = " ".join(line.split())
    parts, at = [], 0
    for match in WILD.finditer(text):
        parts += [re.escape(text[at : match.start()]), WILDCARDS[str(match.lastgroup)]]
        at = match.end()
    parts.append(re.escape(text[at:]))
    return re.compile("".join(parts))


def expected_exit(shown: list[str]) -> int:
    """Return the exit status the README implies by the first line it shows."""
    first = shown[0] if shown else ""
    for prefix, code in (("denied:", 3), ("FAILED", 1), ("error:", 2)):
        if first.startswith(prefix):
            return code
    return 0


def check_shown(command: str, shown: list[str], output: str) -> None:
    """Assert every shown line matches a line of ``output``, in order."""
    lines = [" ".join(line.split()) for line in output.splitlines()]
    at = 0
    for want in shown:
        regex = pattern(want)
        while at < len(lines) and not regex.fullmatch(lines[at]):
            at += 1
        assert at < len(lines), (
            f"README shows, after `{command}`:\n  {want}\nbut the command printed:\n{output}"
        )
        at += 1


def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    """Every command, script and file of the README's tour works as shown, in order."""
    if shutil.which("auditml", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("the auditml console script is not installed beside this Python")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITML_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    steps = tour_steps(README.read_text(encoding="utf-8"))
    assert len([s for s in steps if s.kind == "command"]) >= 20
    for step in steps:
        if step.kind == "file":
            (tmp_path / step.name).write_text(step.text, encoding="utf-8")
            continue
        if step.kind == "python":
            script = tmp_path / "tour_step.py"
            script.write_text(step.text, encoding="utf-8")
            run = subprocess.run(
                [sys.executable, str(script)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert run.returncode == 0, f"README Python block failed:\n{step.text}\n{run.stderr}"
            continue
        words = shlex.split(step.text, comments=True)
        if words and words[0] == "export":
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                env[name] = value
            continue
        run = subprocess.run(
            ["bash", "-c", step.text],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = run.stdout + run.stderr
        assert "Traceback" not in output, f"`{step.text}` printed a traceback:\n{output}"
        assert run.returncode == expected_exit(step.shown), (
            f"`{step.text}` exited {run.returncode}, README implies "
            f"{expected_exit(step.shown)}:\n{output}"
        )
        check_shown(step.text, step.shown, output)
