"""Startup: a short command imports only what it uses (issue 20), and nothing drifts apart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import auditml
from auditml.cards.render import FORMATS
from auditml.cli import card


def _modules_after(code: str) -> set[str]:
    """Return the modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    source = str(Path(auditml.__file__).parents[1])  # this auditml, not another installed one
    env = {**os.environ, "PYTHONPATH": source}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    return set(done.stdout.split())


def test_the_cli_names_the_card_formats_the_renderer_has() -> None:
    """The card command's formats (kept in the CLI so it loads no cards code) are the renderer's."""
    assert card.FORMATS == FORMATS


def test_importing_auditml_loads_nothing_it_does_not_use() -> None:
    """``import auditml`` loads neither the store, pydantic nor importlib.metadata."""
    loaded = _modules_after("import auditml")
    assert not {"auditml.log", "auditml.store", "pydantic", "importlib.metadata"} & loaded


def test_the_cli_loads_no_cards_reports_or_serving_to_start() -> None:
    """Building the command tree imports no cards, reports, serving or key-file code."""
    loaded = _modules_after("import auditml.cli")
    heavy = {"auditml.cards", "auditml.reports", "auditml.serving", "auditml._internal.keyfiles"}
    assert not heavy & loaded
    assert "auditml.log" not in loaded
