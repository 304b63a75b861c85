"""Startup: a short command imports only what it uses (issue 20), and nothing drifts apart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import auditml
from auditml import AuditLog
from auditml.cards.render import FORMATS
from auditml.cli import card
from auditml.store._backends import SQLiteBackend, SQLitePool, backend_for, redact


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


def test_a_decision_on_a_sqlite_log_loads_no_sqlalchemy(tmp_path: Path) -> None:
    """Opening a SQLite log, approving, deploying and reading status import no SQLAlchemy."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with AuditLog.init(url, actor="admin@bank.example")[0] as log:
        log.record_training("credit", actor="ds@bank.example")
    loaded = _modules_after(
        "from auditml import AuditLog\n"
        f"log = AuditLog.open({url!r})\n"
        "log.approve('credit', '1', reason='ok', actor='v@bank.example')\n"
        "log.deploy('credit', '1', 'production', reason='go', actor='r@bank.example')\n"
        "assert log.status('credit')['credit'].versions['1'].running_in == ['production']\n"
        "log.close()"
    )
    assert not {m for m in loaded if m.split(".")[0] in ("sqlalchemy", "sqlmodel")}


def test_the_status_command_on_a_sqlite_log_loads_no_sqlalchemy(tmp_path: Path) -> None:
    """``auditml status`` (the CLI, whole) on a SQLite log imports no SQLAlchemy or SQLModel."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditLog.init(url, actor="admin@bank.example")[0].close()
    loaded = _modules_after(
        "from auditml.cli import main\n"
        "try:\n"
        f"    main(['status', '--db', {url!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code"
    )
    assert not {m for m in loaded if m.split(".")[0] in ("sqlalchemy", "sqlmodel")}


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///audit.db",
        "sqlite:////tmp/x/audit.db",
        "sqlite:///a%20b.db",
        "sqlite:///./rel/dir/audit.db",
        "sqlite+pysqlite:///x.db",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///x.db?mode=ro",
        "sqlite:///C:/x.db",
        "sqlite://host/x.db",
    ],
)
def test_sqlite_urls_read_without_sqlalchemy_as_sqlalchemy_reads_them(url: str) -> None:
    """The SQLite path and the redacted URL read here equal what SQLAlchemy's parser gives."""
    from sqlalchemy.engine import make_url

    backend = backend_for(url)
    assert isinstance(backend, SQLiteBackend)
    database = make_url(url).database
    assert backend.path == (None if database in (None, "", ":memory:") else database)
    assert redact(url) == make_url(url).render_as_string(hide_password=True)


def test_the_sqlite_pool_reuses_connections_and_rolls_back_what_is_left_open(
    tmp_path: Path,
) -> None:
    """A connection given back with a transaction open is rolled back, then lent again."""
    pool = SQLitePool(str(tmp_path / "p.db"), create=True)
    conn = pool.raw_connection()
    conn.cursor().execute("CREATE TABLE t (x INTEGER)")
    conn.cursor().execute("BEGIN")
    conn.cursor().execute("INSERT INTO t VALUES (1)")
    raw = conn.driver_connection
    conn.close()
    again = pool.raw_connection()
    assert again.driver_connection is raw  # reused
    assert again.cursor().execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert again.cursor().execute("PRAGMA journal_mode").fetchone() == ("wal",)
    again.close()
    pool.dispose()


def test_an_in_memory_store_is_one_database_for_every_connection() -> None:
    """Every loan of an in-memory pool, and its SQLAlchemy engine, see the same database."""
    pool = SQLitePool(None, create=True)
    first = pool.raw_connection()
    first.cursor().execute("CREATE TABLE t (x INTEGER)")
    first.cursor().execute("INSERT INTO t VALUES (7)")
    first.close()  # closing a loan keeps the database
    engine = backend_for("sqlite://").sa_engine(pool)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT x FROM t").scalar() == 7
    engine.dispose()
    assert pool.raw_connection().cursor().execute("SELECT x FROM t").fetchone() == (7,)
    pool.dispose()


def test_each_command_name_leads_to_the_module_that_registers_it() -> None:
    """COMMAND_MODULES names, for every top-level command and group, the module defining it."""
    from auditml.cli import COMMAND_MODULES, app

    found: dict[str, str] = {}
    for command in app.registered_commands:
        assert command.callback is not None
        found[str(command.name or command.callback.__name__)] = command.callback.__module__
    for group in app.registered_groups:
        assert group.typer_instance is not None
        modules = {
            c.callback.__module__ for c in group.typer_instance.registered_commands if c.callback
        }
        assert len(modules) == 1
        found[str(group.name)] = modules.pop()
    assert found == {name: f"auditml.cli.{module}" for name, module in COMMAND_MODULES.items()}


def _decide(tmp_path: Path, argv: list[str]) -> set[str]:
    """Return the modules a fresh interpreter holds after running the CLI with ``argv``."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    if not (tmp_path / "audit.db").exists():
        with AuditLog.init(url, actor="admin@bank.example")[0] as log:
            log.record_training("credit", actor="ds@bank.example")
    return _modules_after(
        "from auditml.cli import main\n"
        "try:\n"
        f"    main({[*argv, '--db', url]!r})\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code"
    )


#: What no decision from the command line loads: the other command groups, SQLAlchemy, and
#: the code of cards, reports, serving, key files of people, MLflow and the runtime.
NOT_FOR_A_DECISION = (
    "auditml.cli.card",
    "auditml.cli.log",
    "auditml.cli.mlflow",
    "auditml.cli.privacy",
    "auditml.cli.report",
    "auditml.cli.runtime",
    "auditml.cli.trust",
    "auditml.cards",
    "auditml.reports",
    "auditml.serving",
    "auditml.mlflow_bridge",
    "auditml.runtime",
    "auditml.training",
    "sqlalchemy",
    "sqlmodel",
    "jinja2",
    "mlflow",
    # Verification's machinery, the runtime-window reader and the retention service.
    "auditml._internal.tree_worker",
    "auditml.core.records",
    "auditml.evidence",
    "auditml.privacy",
    # AES-GCM and Ed25519: no value is sealed and no key signs or checks in a decision.
    "cryptography",
    # The log holds its policy as JSON; only a policy file being recorded is TOML.
    "tomllib",
)


def _unwanted(loaded: set[str], extra: tuple[str, ...] = ()) -> set[str]:
    """Return the loaded modules that are, or are inside, one of NOT_FOR_A_DECISION or extra."""
    names = (*NOT_FOR_A_DECISION, *extra)
    return {m for m in loaded if any(m == n or m.startswith(n + ".") for n in names)}


def test_approve_and_deploy_from_the_command_line_load_no_other_command_and_no_rich(
    tmp_path: Path,
) -> None:
    """``auditml approve`` and ``deploy`` import only their group's module, and no Rich at all."""
    approve = ["approve", "credit", "1", "--reason", "ok", "--actor", "v@bank.example"]
    registry = ("auditml.registry", "auditml.core.registry")  # status shows its violations
    assert not _unwanted(_decide(tmp_path, approve), ("rich", *registry))
    deploy = ["deploy", "credit", "1", "--env", "production", "--actor", "r@bank.example"]
    assert not _unwanted(_decide(tmp_path, deploy), ("rich", *registry))


def test_status_from_the_command_line_loads_no_other_command(tmp_path: Path) -> None:
    """``auditml status`` imports only the lifecycle commands (Rich prints its table)."""
    loaded = _decide(tmp_path, ["status"])
    assert "auditml.cli.lifecycle" in loaded
    assert not _unwanted(loaded)


def test_help_after_one_command_still_lists_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command run first (it loads one group) leaves ``--help`` listing all, commands first."""
    from auditml.cli import SHORT_HELP
    from tests.conftest import run_cli

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditLog.init(url, actor="admin@bank.example")[0].close()
    assert run_cli(["status", "--db", url], capsys)[0] == 0
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    listed = [line.split()[0] for line in out.split("Commands")[1].splitlines()[1:] if line.strip()]
    groups = {name.split()[0] for name in SHORT_HELP if " " in name}
    tops = [name for name in SHORT_HELP if " " not in name]
    assert listed == [n for n in tops if n not in groups] + [n for n in tops if n in groups]


@pytest.mark.parametrize("terminal", [False, True])
def test_a_plain_line_printed_without_rich_is_what_rich_prints(terminal: bool) -> None:
    """Each line the CLI writes itself, without Rich, is byte for byte what its console prints."""
    import io
    import random

    from auditml.cli._common import _plain, _safe_console

    console = _safe_console()
    rng = random.Random(20)
    alphabet = "ab Z09-_.()[]{}@#%&*+=/\\|<>?!'\"é漢😀\u0301\u200b\u00a0~`^$,;\u2028\x1b\x00\t\n:"
    tokens = [*alphabet, ":smile:", ":thumbs_up:", "[bold]", "[/]", "http://x.example/a"]
    compared = 0
    for _ in range(3000):
        line = "".join(rng.choice(tokens) for _ in range(rng.randint(0, 30)))
        if not _plain(line):
            continue
        compared += 1
        written = io.StringIO()
        settings = {"highlight": False, "markup": False, "emoji": False, "soft_wrap": True}
        width = rng.choice([20, 80]) if terminal else 200
        console(file=written, width=width, force_terminal=terminal, **settings).print(line)
        assert written.getvalue() == line + "\n"
    assert compared > 200


def test_a_command_freezes_what_start_up_made_and_leaves_the_collector_running(
    tmp_path: Path,
) -> None:
    """After ``auditml status`` the collector runs; what start-up made is frozen, not scanned."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditLog.init(url, actor="admin@bank.example")[0].close()
    script = (
        "import gc\n"
        "from auditml.cli import main\n"
        "try:\n"
        f"    main(['status', '--db', {url!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 10_000)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(auditml.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    assert done.stdout.splitlines()[-1] == "True True"


def test_start_up_leaves_a_paused_collector_paused() -> None:
    """The start-up pause restores the collector as it found it, off when it was off."""
    import gc

    from auditml.cli._startup import startup

    gc.disable()
    try:
        with startup():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    with startup():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_second_command_in_one_process_freezes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a process's first command freezes its start-up: later ones leave objects collectable."""
    import gc

    from tests.conftest import run_cli

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditLog.init(url, actor="admin@bank.example")[0].close()
    assert run_cli(["status", "--db", url], capsys)[0] == 0  # the first, unless one ran before
    frozen: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    assert run_cli(["status", "--db", url], capsys)[0] == 0
    assert not frozen


def test_event_policy_and_privacy_models_are_written_with_annotation_objects() -> None:
    """The modules of the event, policy and privacy models postpone no annotations."""
    from auditml.core import events, policy, privacy

    # ``from __future__ import annotations`` binds ``annotations``: pydantic would then
    # compile and evaluate every field's annotation text as each model is made.
    assert not {m.__name__ for m in (events, policy, privacy) if hasattr(m, "annotations")}


def test_a_table_written_without_rich_is_what_rich_prints() -> None:
    """Each table the CLI writes itself, without Rich, is byte for byte Rich's borderless table."""
    import io
    import random

    from auditml.cli._common import PlainTable, Styled, _safe_console, table

    console = _safe_console()
    rng = random.Random(21)
    words = ["", " ", "a", "v1", "ds@bank.example", "2026-12-04 20:30:50", "x y", "  z", "w  "]
    words += ["production (imported)", "é", "漢字", "tab\there", "a" * 90, "[bold]", ":smile:"]
    compared = 0
    for _ in range(1500):
        shown: PlainTable = table(*(rng.choice(words) or "h" for _ in range(rng.randint(1, 7))))
        for _ in range(rng.randint(0, 5)):
            shown.add_row(*(rng.choice(words) for _ in shown.columns))
        written = io.StringIO()
        settings = {"highlight": False, "markup": False, "emoji": False, "soft_wrap": True}
        console(file=written, width=200, **settings).print(shown)
        plain = shown.plain(200)
        if plain is not None:
            compared += 1
            assert plain == written.getvalue(), (shown.columns, shown.rows)
    assert compared > 200
    line = Styled(("credit", "bold"), "  now running: production: v1")
    written = io.StringIO()
    console(file=written, width=200, highlight=False, markup=False, emoji=False).print(line)
    assert written.getvalue() == line.plain() + "\n"


def test_status_to_a_pipe_imports_no_rich(tmp_path: Path) -> None:
    """`auditml status` to a pipe writes its table without Rich, the same bytes as Rich."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with AuditLog.init(url, actor="admin@bank.example")[0] as log:
        for _ in range(3):
            log.record_training("credit", actor="ds@bank.example")
        log.approve("credit", "1", actor="val@bank.example", reason="ok")
        log.deploy("credit", "1", "production", actor="ops@bank.example")
    script = (
        "import sys\n"
        "from auditml.cli import main\n"
        "try:\n"
        f"    main(['status', '--db', {url!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('rich' in sys.modules, file=sys.stderr)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(auditml.__file__).parents[1])}
    env.pop("FORCE_COLOR", None)
    env.pop("TTY_COMPATIBLE", None)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    assert done.stderr.strip().splitlines()[-1] == "False"
    forced = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "TTY_COMPATIBLE": "0"},  # Rich decides: it prints the same table
    )
    assert forced.stderr.strip().splitlines()[-1] == "True"
    assert forced.stdout == done.stdout
    assert "credit  now running: production: v1" in done.stdout
