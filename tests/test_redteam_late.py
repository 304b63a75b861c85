"""Red-team attacks on the late features: report seals, ingest skips, registry syncs, policy.

Each test is one hostile input or escape hatch; those that found a hole came with its fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from auditml import AuditLog, build_report, verify_report
from auditml.core.pdfseal import BLANK, HEX_LEN, MARKER, read_seal
from auditml.core.registry import KnownModel, KnownVersion, Snapshot
from auditml.errors import InvalidInputError, VerificationError
from auditml.reports.model import BUNDLE_NAME
from auditml.reports.pdf import write_pdf_report

URI = "http://mlflow.internal:5000"
MODEL = "credit-risk"


def _init(db_url: str) -> AuditLog:
    log, _ = AuditLog.init(db_url, origin="bank.example/credit-models")
    log.close()
    return AuditLog.open(db_url)


def _shows(*versions: str, **aliases: str) -> Snapshot:
    """Return a registry showing ``versions`` of the model and ``aliases`` (alias -> version)."""
    model = KnownModel(
        MODEL, versions={v: KnownVersion(v) for v in versions}, aliases=dict(aliases)
    )
    return {MODEL: model}


def _sync(log: AuditLog, version: str, env: str, alias: str, seq: int) -> None:
    log.record_registry_sync(
        model=MODEL,
        version=version,
        environment=env,
        alias=alias,
        decision_seq=seq,
        uri=URI,
        actor="ops",
    )


def _two_deploys(log: AuditLog, tmp_path: Path) -> tuple[int, int]:
    """Map production to champion and staging to candidate; deploy v1 then v2 to production."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[mlflow]\naliases = { production = "champion", staging = "candidate" }\n')
    log.apply_policy(policy, actor="ops")
    log.record_registry(_shows("1", "2", champion="1"), via="import", uri=URI, actor="ops")
    for version in ("1", "2"):
        log.approve(MODEL, version, actor="val@bank.example")
    first = log.deploy(MODEL, "1", "production", actor="ops@bank.example").seq
    second = log.deploy(MODEL, "2", "production", actor="ops@bank.example").seq
    _sync(log, "2", "production", "champion", second)
    return first, second


def test_a_sync_naming_a_superseded_deploy_is_refused(db_url: str, tmp_path: Path) -> None:
    """A done sync standing on a replaced deploy (v1, then v2) cannot hide MLflow's move back."""
    with _init(db_url) as log:
        first, _ = _two_deploys(log, tmp_path)
        size = log.head().size
        with pytest.raises(InvalidInputError, match="no live deploy"):
            _sync(log, "1", "production", "champion", first)
        assert log.head().size == size
        # MLflow moved champion back to v1 by hand: the next poll sees it.
        back = log.record_registry(_shows("1", "2", champion="1"), via="poll", uri=URI, actor="o")
        assert [(c.kind, c.version) for c, _, _ in back.changes] == [("alias.set", "1")]


def test_a_sync_moving_another_environments_alias_is_refused(db_url: str, tmp_path: Path) -> None:
    """A production deploy cannot vouch for staging's alias (or any other than production's)."""
    with _init(db_url) as log:
        _, second = _two_deploys(log, tmp_path)
        size = log.head().size
        for alias in ("candidate", "not-champion"):
            with pytest.raises(InvalidInputError, match="alias"):
                _sync(log, "2", "production", alias, second)
        assert log.head().size == size
        assert log.registry_known(URI)[MODEL].aliases == {"champion": "2"}


def test_an_imported_done_sync_does_not_count_as_mlflow_showing_the_alias(db_url: str) -> None:
    """append('registry.sync', imported=True) stands on no live decision, so the fold ignores it."""
    with _init(db_url) as log:
        log.record_registry(_shows("1", "2", champion="1"), via="import", uri=URI, actor="ops")
        log.append(
            "registry.sync",
            subject={"model": MODEL, "version": "2"},
            data={
                "uri": URI,
                "alias": "champion",
                "environment": "production",
                "decision_seq": 0,
                "status": "done",
                "previous": "1",
                "error": None,
            },
            actor="ops",
            imported=True,
        )
        assert log.registry_known(URI)[MODEL].aliases == {"champion": "1"}
        moved = log.record_registry(_shows("1", "2", champion="2"), via="poll", uri=URI, actor="o")
        assert [(c.kind, c.version) for c, _, _ in moved.changes] == [("alias.set", "2")]


@pytest.mark.parametrize(
    "uri",
    [
        "https://bob:hunter2@mlflow.internal:5000/\n",
        "https://bob:hunter2@mlflow.internal:5000/ x",
        "https://mlflow.internal:5000/?token=hunter2&x=" + "a" * 5000,
    ],
)
def test_a_sync_with_a_uri_no_registry_can_have_never_writes_its_credentials(
    db_url: str, tmp_path: Path, uri: str
) -> None:
    """A sync's URI that fails its identity is still stripped of credentials before the log."""
    with _init(db_url) as log:
        _, second = _two_deploys(log, tmp_path)
        log.record_registry_sync(
            model=MODEL,
            version="2",
            environment="production",
            alias="champion",
            decision_seq=second,
            uri=uri,
            error="the URI is not one MLflow can reach",
            actor="ops",
        )
        (sync,) = [r for r in log.events(action="registry.sync")][-1:]
        assert "hunter2" not in sync.event.data["uri"]
        log.verify()


def test_a_sync_of_the_rollback_in_force_is_taken_and_of_the_deploy_it_undid_is_not(
    db_url: str, tmp_path: Path
) -> None:
    """After a rollback to v1, the rollback vouches for champion at v1, the old deploy not."""
    with _init(db_url) as log:
        first, _ = _two_deploys(log, tmp_path)
        back = log.rollback(MODEL, "production", to="1", reason="drift", actor="ops@bank.example")
        with pytest.raises(InvalidInputError, match="still in force"):
            _sync(log, "1", "production", "champion", first)
        _sync(log, "1", "production", "champion", back.seq)
        assert log.registry_known(URI)[MODEL].aliases == {"champion": "1"}


def test_a_review_that_passed_does_not_let_apply_strand_what_was_deployed_since(
    db_url: str, tmp_path: Path
) -> None:
    """review_policy, then a deploy to staging, then apply_policy: apply checks again, refuses."""
    policy = tmp_path / "policy.toml"
    policy.write_text('environments = ["production"]\n')
    with _init(db_url) as log:
        log.record_training(MODEL, data={"metrics": {"auc": 0.8}}, actor="ds")
        log.approve(MODEL, "1", actor="val@bank.example")
        assert log.review_policy(policy, actor="ops") is not None
        log.deploy(MODEL, "1", "staging", actor="ops@bank.example")
        size = log.head().size
        with pytest.raises(InvalidInputError, match="leave out 'staging'"):
            log.apply_policy(policy, actor="ops")
        assert log.head().size == size


@pytest.fixture(scope="module")
def sealed_report(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Print one sealed report of a log whose model name and actor are the seal's marker."""
    folder = tmp_path_factory.mktemp("redteam-report")
    made, _ = AuditLog.init(f"sqlite:///{folder / 'audit.db'}", origin="bank.example/rt")
    hostile = (MARKER + BLANK).decode()
    with made as log:
        log.record_training(hostile, data={"metrics": {"auc": 0.8}}, actor=hostile)
        report = build_report(log)
        return write_pdf_report(log, report, folder / "report.pdf").read_bytes()


def test_a_model_and_actor_named_as_the_marker_leave_one_seal_that_verifies(
    sealed_report: bytes, tmp_path: Path
) -> None:
    """Log text equal to the marker (in titles, bookmarks, metadata) never makes a second seal."""
    assert sealed_report.count(MARKER) == 1
    path = tmp_path / "report.pdf"
    path.write_bytes(sealed_report)
    assert verify_report(path).sealed


def _seal_fields(data: bytes, length: int) -> bytes:
    """Return ``data`` with its seal's length field set to ``length``, the rest as sealed."""
    seal = read_seal(data)
    assert seal is not None
    at = seal.offset
    return data[:at] + length.to_bytes(8, "big").hex().encode() + data[at + 16 :]


@pytest.mark.parametrize(
    "length",
    [0, 1, HEX_LEN, 2**63 - 1, 2**64 - 1],
    ids=["zero", "one", "inside-the-digits", "huge", "max"],
)
def test_a_seal_claiming_a_length_that_overlaps_its_own_digits_or_overflows_fails(
    sealed_report: bytes, tmp_path: Path, length: int
) -> None:
    """A seal's length field edited (overlapping its digits, 2**64-1) fails as changed bytes."""
    path = tmp_path / "report.pdf"
    path.write_bytes(_seal_fields(sealed_report, length))
    with pytest.raises(VerificationError) as caught:
        verify_report(path)
    assert caught.value.kind == "seal"


def test_a_sealed_report_with_a_second_revision_appended_in_place_of_bytes_fails(
    sealed_report: bytes, tmp_path: Path
) -> None:
    """A revision added in place of the last bytes (the length kept) fails as changed bytes."""
    revision = b"\n1 0 obj\n<< /Title (ALL APPROVED) >>\nendobj\n%%EOF\n"
    forged = sealed_report[: len(sealed_report) - len(revision)] + revision
    assert len(forged) == len(sealed_report)
    path = tmp_path / "report.pdf"
    path.write_bytes(forged)
    with pytest.raises(VerificationError, match="changed since it was sealed"):
        verify_report(path)


def test_a_decompression_bomb_in_place_of_the_evidence_fails_cleanly(tmp_path: Path) -> None:
    """An unsealed PDF whose evidence inflates past pypdf's limit is refused, no crash."""
    from pypdf import PdfWriter
    from pypdf.generic import NameObject, StreamObject

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.add_attachment(BUNDLE_NAME, b"\0" * (80 * 1024 * 1024))
    for number, obj in enumerate(writer._objects):
        if isinstance(obj, StreamObject) and obj.get("/Type") == NameObject("/EmbeddedFile"):
            writer._objects[number] = obj.flate_encode()
    path = tmp_path / "report.pdf"
    with path.open("wb") as f:
        writer.write(f)
    assert path.stat().st_size < 1024 * 1024  # it is compressed in the file
    with pytest.raises(VerificationError) as caught:
        verify_report(path)
    assert caught.value.kind == "format", str(caught.value)


def test_a_report_file_that_grows_while_read_is_judged_on_the_bytes_first_read(
    sealed_report: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes appended after the file was opened are never seen: every check reads one copy."""
    import auditml.reports.verify as verify

    path = tmp_path / "report.pdf"
    path.write_bytes(sealed_report)
    real = verify.open_regular

    def growing(where: Path, what: str) -> object:
        opened = real(where, what)
        with path.open("ab") as f:
            f.write(b"%% appended while read\n")
        return opened

    monkeypatch.setattr(verify, "open_regular", growing)
    with pytest.raises(VerificationError, match="appended after its sealed end"):
        verify_report(path)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_ingest_runtime_given_a_path_refuses_a_pipe_or_device_unread(
    db_url: str, tmp_path: Path, kind: str
) -> None:
    """The library's ingest_runtime(Path) opens through open_regular, as the CLI does."""
    import os

    if kind == "fifo":
        path = tmp_path / "records.jsonl"
        os.mkfifo(path)
        holder = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # a writer, so opening never waits
        os.write(holder, b"not json\n")
        wanted = "is a named pipe"
    else:
        path = Path("/dev/zero")
        if not path.exists():
            pytest.skip("no /dev/zero here")
        holder = None
        wanted = "is a character device"
    try:
        with _init(db_url) as log:
            log.record_training(MODEL, actor="ds")
            size = log.head().size
            with pytest.raises(InvalidInputError, match=wanted):
                log.ingest_runtime(MODEL, path, env="production")
            assert log.head().size == size
    finally:
        if holder is not None:
            os.close(holder)


def test_a_card_file_of_yaml_aliases_is_refused_before_it_expands(
    db_url: str, tmp_path: Path
) -> None:
    """A YAML alias bomb (one anchor, many aliases) would grow the event a thousandfold: refused."""
    card = tmp_path / "card.yaml"
    aliases = ", ".join(["*big"] * 1000)
    card.write_text(f"overview: &big {'x' * 1000}\nreferences: [{aliases}]\n")
    with _init(db_url) as log:
        log.record_training(MODEL, actor="ds")
        size = log.head().size
        with pytest.raises(InvalidInputError, match=r"line 2: .*alias"):
            log.update_card(MODEL, card, actor="ds")
        assert log.head().size == size


@pytest.mark.parametrize("dry_run", [True, False])
def test_policy_apply_json_warnings_on_stderr_are_json_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dry_run: bool
) -> None:
    """With --json, policy apply warns of an unknown gate metric and a stranding as JSON lines."""
    import json

    from tests.conftest import run_cli

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with _init(url) as log:
        log.record_training(MODEL, actor="ds")
        log.approve(MODEL, "1", actor="val@bank.example")
        log.deploy(MODEL, "1", "staging", actor="ops@bank.example")
    policy = tmp_path / "policy.toml"
    policy.write_text('environments = ["production"]\n[gates]\nproduction = ["auc >= 0.9"]\n')
    args = ["policy", "apply", str(policy), "--allow-stranded", "--json", "--db", url]
    code, out, err = run_cli([*args, *(["--dry-run"] if dry_run else [])], capsys)
    assert code == 0, err
    json.loads(out)
    lines = [json.loads(line) for line in err.splitlines()]
    assert [sorted(line) for line in lines] == [["warning"], ["warning"]], err


def test_actors_json_on_a_tampered_directory_writes_json_on_both_streams(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a directory row edited by raw SQL, actors --json gives JSON on stdout and on stderr."""
    import json

    from auditml.core.events import Actor
    from tests.conftest import raw_sql, run_cli

    policy = tmp_path / "policy.toml"
    policy.write_text("[personal_data]\npseudonymous_actors = true\n")
    with _init(db_url) as log:
        log.apply_policy(policy, actor="admin")
        log.record_training(MODEL, actor=Actor(id="alice@bank.example", name="Alice Martin"))
    raw_sql(db_url, ["UPDATE auditml_actor SET known_as = 'mallory@bank.example'"])
    code, out, err = run_cli(["actors", "--db", db_url, "--json"], capsys)
    assert code == 1
    json.loads(out)
    (error,) = [json.loads(line) for line in err.splitlines()]
    assert error["exit"] == 1 and "actor directory" in error["error"], err


def test_actors_enroll_existing_json_says_what_it_enrolled_as_a_json_line(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --json, actors --enroll-existing reports its enrolment as a JSON note on stderr."""
    import json

    from tests.conftest import run_cli

    policy = tmp_path / "policy.toml"
    policy.write_text("[personal_data]\npseudonymous_actors = true\n")
    with _init(db_url) as log:
        log.apply_policy(policy, actor="admin")
    code, out, err = run_cli(["actors", "--enroll-existing", "--db", db_url, "--json"], capsys)
    assert code == 0, err
    json.loads(out)
    (note,) = [json.loads(line) for line in err.splitlines()]
    assert "Enrolled 0 pseudonym(s)" in note["note"]
