"""Red-team attacks on the features merged on 4 December: rollouts, gates, actors, MLflow.

Each test is one way in, shown to be closed (or one attempt shown to hold).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from auditml import AuditLog, InvalidInputError, PolicyDeniedError, VerificationError
from auditml.core.policy import policy_from_toml
from tests.conftest import run_cli
from tests.test_rollouts import DS, MON, OPS, POLICY, _serve

ADMIN = "admin@bank.example"
ALICE = "alice.martin@bank.example"
VAL = "victor.alvarez@bank.example"
PSEUDONYMOUS = "[personal_data]\npseudonymous_actors = true\n"
INVENTED = "actor:0123456789abcdef"


def _policy(log: AuditLog, tmp_path: Path, text: str) -> int:
    path = tmp_path / f"policy-{log.head().size}.toml"
    path.write_text(text, encoding="utf-8")
    return log.apply_policy(path, reason="red team", actor=ADMIN).seq


@pytest.fixture
def pseudo(db_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    """Yield a log with pseudonymous actors, two approvals for production, v1 trained by ALICE."""
    opened, _ = AuditLog.init(db_url, origin="bank.example/redteam", actor=ADMIN)
    _policy(opened, tmp_path, PSEUDONYMOUS + "[approvals]\nproduction = 2\n")
    opened.record_training("credit", actor=ALICE)
    try:
        yield opened
    finally:
        opened.close()


# -- pseudonymous actors ----------------------------------------------------------------


@pytest.mark.parametrize("invented", [INVENTED, "actor:fedcba9876543210"])
def test_an_invented_pseudonym_cannot_approve_a_trainers_work(
    pseudo: AuditLog, invented: str
) -> None:
    """A trainer acting as an actor:<hex> auditml never drew is refused; nothing is written."""
    size = pseudo.head().size
    with pytest.raises(InvalidInputError, match="never drew it"):
        pseudo.approve("credit", "1", actor=invented)
    assert pseudo.head().size == size
    assert pseudo.status("credit")["credit"].versions["1"].approvals == []


def test_an_invented_pseudonym_on_the_command_line_exits_cleanly(
    pseudo: AuditLog, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml approve --actor actor:<hex>` names the problem, exits non-zero, no traceback."""
    size = pseudo.head().size
    code, out, err = run_cli(
        ["approve", "credit", "1", "--db", db_url, "--actor", INVENTED, "--reason", "x"], capsys
    )
    assert code not in (0, 70) and "never drew it" in out + err
    assert "Traceback" not in out + err and pseudo.head().size == size


def test_a_drawn_pseudonym_answers_for_its_person(pseudo: AuditLog) -> None:
    """Alice acting under her own pseudonym is still Alice: she may not approve her training."""
    (train,) = list(pseudo.events(action="model.train"))
    with pytest.raises(PolicyDeniedError, match="trained version") as info:
        pseudo.approve("credit", "1", actor=train.event.actor.id)
    assert info.value.rule == "separation-of-duties"


def test_an_erased_pseudonym_cannot_act(pseudo: AuditLog) -> None:
    """Once an identity is erased its pseudonym acts no more (it would be nobody's)."""
    (train,) = list(pseudo.events(action="model.train"))
    pseudo.erase_actor(ALICE, request="REQ-1", reason="Art. 17", actor=ADMIN)
    size = pseudo.head().size
    with pytest.raises(InvalidInputError, match="erased"):
        pseudo.approve("credit", "1", actor=train.event.actor.id)
    assert pseudo.head().size == size


def test_switching_pseudonyms_off_does_not_free_a_trainer_to_approve(
    pseudo: AuditLog, tmp_path: Path
) -> None:
    """Trained under a pseudonym, then the policy turned off: her e-mail still may not approve."""
    _policy(pseudo, tmp_path, "[personal_data]\npseudonymous_actors = false\n")
    for who in (ALICE, f" {ALICE.upper()}"):
        with pytest.raises(PolicyDeniedError, match="trained version") as info:
            pseudo.approve("credit", "1", actor=who)
        assert info.value.rule == "separation-of-duties"
    pseudo.approve("credit", "1", actor=VAL)


# -- rollouts and the monitor -------------------------------------------------------------


@pytest.fixture
def rollout_log(db_url: str) -> Iterator[AuditLog]:
    """Yield a log where v1 runs production, v2 and v3 are approved, under the rollout policy."""
    made, _ = AuditLog.init(db_url, origin="bank.example/rollouts", actor=ADMIN)
    with made:
        for _ in range(3):
            made.record_training("credit", actor=DS)
        for version in ("1", "2", "3"):
            made.approve("credit", version, actor=VAL, reason="VR")
        made.deploy("credit", "1", "production", actor=OPS)
        made.apply_policy(policy_from_toml(POLICY, where="auditml.toml"), actor=ADMIN)
        yield made


@pytest.mark.parametrize("window", ["99999999d", "1" + "0" * 400 + "d"])
def test_a_window_longer_than_the_calendar_reads_the_whole_rollout(
    rollout_log: AuditLog, capsys: pytest.CaptureFixture[str], window: str
) -> None:
    """A window beyond year 1 is the whole rollout, not an OverflowError (exit 70)."""
    rollout_log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(rollout_log, {"1": 40, "2": 20})
    result = rollout_log.monitor("credit", "production", window=window)
    counts = result.data["counts"]
    assert (counts["canary"], counts["stable"]) == (20, 40)
    assert result.verdict == "undecided"  # 20 scores decide no PSI; the error rate is ok
    assert [t.get("tripped") for t in result.data["triggers"]] == [False, None]
    args = ["monitor", "credit", "--env", "production", "--window", window, "--db"]
    code, _, err = run_cli([*args, rollout_log.url], capsys)
    assert code == 0 and "Traceback" not in err


def test_the_monitors_pseudonym_given_directly_may_not_promote(
    rollout_log: AuditLog, tmp_path: Path
) -> None:
    """Someone acting as the monitor's pseudonym is the monitor: promotion refused, recorded."""
    text = POLICY.decode() + "\n" + PSEUDONYMOUS
    _policy(rollout_log, tmp_path, text)
    rollout_log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(rollout_log, {"1": 40, "2": 20})
    check = rollout_log.monitor("credit", "production").check
    (event,) = list(rollout_log.events(start=check.seq, stop=check.seq + 1))
    pseudonym = event.event.actor.id
    assert pseudonym != MON and rollout_log.actors()[pseudonym].known_as == MON
    size = rollout_log.head().size
    with pytest.raises(PolicyDeniedError) as info:
        rollout_log.promote("credit", "2", "production", traffic="50%", actor=pseudonym)
    assert info.value.rule == "monitor-may-not-promote"
    assert rollout_log.head().size == size + 1
    assert rollout_log.status("credit")["credit"].split("production") == {"1": 90, "2": 10}


def test_imported_history_never_changes_a_live_rollout(rollout_log: AuditLog) -> None:
    """Imported promote, deploy and rollout.start leave the live canary in force and monitored."""
    log = rollout_log
    start = log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    subject = {"model": "credit", "version": "2"}
    env = {"environment": "production"}
    log.append(
        "rollout.promote",
        subject=subject,
        data={**env, "traffic": 90, "previous": 10, "rollout": start.seq},
        actor=OPS,
        imported=True,
    )
    log.append("model.deploy", subject=subject, data={**env, "replaces": "1"}, imported=True)
    log.append(
        "rollout.start",
        subject={"model": "credit", "version": "3"},
        data={**env, "mode": "canary", "traffic": 50, "stable": "1"},
        imported=True,
    )
    state = log.status("credit")["credit"]
    rollout = state.rollouts["production"]
    assert (rollout.seq, rollout.version, rollout.traffic, rollout.imported) == (
        start.seq,
        "2",
        10,
        False,
    )
    assert state.split("production") == {"1": 90, "2": 10}
    assert [c.imported for c in log.splits("credit", "production")][-3:] == [True] * 3
    _serve(log, {"1": 40, "2": 20}, errors=6)
    result = log.monitor("credit", "production", act=True)
    assert result.verdict == "tripped" and result.rollback is not None
    assert log.status("credit")["credit"].split("production") == {"1": 100}


# -- statistical gates --------------------------------------------------------------------


@pytest.mark.parametrize("field", ["a" * 200_000, "1" * 200_000])
def test_a_csv_field_past_the_csv_limit_is_bad_input(field: str) -> None:
    """A 200,000-character CSV field is refused naming the line, not a csv.Error (exit 70)."""
    from auditml.core.compare import parse_examples

    raw = f"id,label,score,baseline_score\nb,0,0.3,0.1\n{field},1,0.4,0.2\n".encode()
    with pytest.raises(InvalidInputError, match=r"examples\.csv line 3: not readable as CSV"):
        parse_examples(raw, where="examples.csv")


# -- the MLflow bridge --------------------------------------------------------------------


def _raw_post(url: str, length: str, body: bytes) -> bytes:
    """POST ``body`` under a stated Content-Length, close our side, and return the reply."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=60) as conn:
        head = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()
        try:
            conn.sendall(head + body)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the listener may refuse and close before taking the whole body
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize(
    ("length", "status"), [("-1", b" 400 "), ("abc", b" 400 "), ("2000000", b" 413 ")]
)
def test_a_webhook_body_of_no_stated_size_or_too_large_is_refused_unread(
    length: str, status: bytes
) -> None:
    """A negative, non-numeric or oversized Content-Length is refused before the body is read."""
    from auditml.mlflow_bridge import WebhookListener

    listener = WebhookListener("127.0.0.1", 0, "s3cret-for-the-webhook-test")
    listener.start()
    try:
        reply = _raw_post(listener.url, length, b"x" * 2_000_000)
        assert status in reply.split(b"\r\n", 1)[0] + b" "
        assert listener.wake.empty()
        assert len(listener.refused) == 1 and "Content-Length" in listener.refused[0]
    finally:
        listener.stop()


def test_an_mlflow_user_named_like_a_pseudonym_is_not_that_person(
    pseudo: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose MLflow user is someone's actor:<hex> imports, under mlflow:, not as them."""
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    (train,) = list(pseudo.events(action="model.train"))
    alice = train.event.actor.id
    client.create_registered_model("scoring")
    for user in (alice, INVENTED):
        run = client.create_run("0", tags={"mlflow.user": user})
        client.create_model_version("scoring", "s3://bucket/model", run_id=run.info.run_id)
    code, _, err = run_cli(["import", "mlflow", "--tracking-uri", uri, "--db", pseudo.url], capsys)
    assert code == 0, err
    trainers = pseudo.status("scoring")["scoring"].versions
    ids = {v: trainers[v].trainers for v in ("1", "2")}
    for found in ids.values():
        assert len(found) == 1 and found[0] not in (alice, INVENTED)
    pseudo.approve("scoring", "1", actor=ALICE)  # Alice trained nothing of scoring


def test_a_score_on_a_few_canary_records_never_trips_a_rollback(rollout_log: AuditLog) -> None:
    """20 canary requests of which 3 carry a wild score: psi is undecided, --act does nothing."""
    log = rollout_log
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"1": 40})
    with log.runtime("credit", env="production", background=False) as rec:
        for n in range(20):
            output = {"score": 1e6 + n} if n < 3 else {"label": "ok"}
            rec.record(f"thin-{n}", version="2", output=output, latency_ms=10.0)
    size = log.head().size
    result = log.monitor("credit", "production", act=True)
    counts = result.data["counts"]
    assert (counts["canary"], counts["stable"], counts["canary_scored(score)"]) == (20, 40, 3)
    assert result.data["statistics"]["score_psi(score)"] is None
    assert result.verdict == "undecided" and result.rollback is None
    assert log.head().size == size + 1
    assert log.status("credit")["credit"].split("production") == {"1": 90, "2": 10}


def _refused_as_tampered(log: AuditLog, action: Callable[[], object], size: int) -> None:
    """Assert ``action`` is refused because the directory does not bind, writing nothing."""
    with pytest.raises(VerificationError) as info:
        action()
    assert info.value.kind == "directory"
    assert log.head().size == size


def test_a_directory_row_rewritten_by_hand_does_not_free_a_trainer(
    pseudo: AuditLog, db_url: str
) -> None:
    """Alice's row renamed by raw SQL: her approval is refused; SoD holds once it is restored."""
    from tests.conftest import raw_sql

    raw_sql(db_url, ["UPDATE auditml_actor SET person = 'somebody-else', known_as = 'x'"])
    size = pseudo.head().size
    _refused_as_tampered(pseudo, lambda: pseudo.approve("credit", "1", actor=ALICE), size)
    raw_sql(db_url, [f"UPDATE auditml_actor SET person = '{ALICE}', known_as = '{ALICE}'"])
    with pytest.raises(PolicyDeniedError, match="trained version"):
        pseudo.approve("credit", "1", actor=ALICE)


@pytest.mark.parametrize(
    "attack",
    [
        "DELETE FROM auditml_actor",
        "UPDATE auditml_actor SET salt = NULL",
        "UPDATE auditml_actor SET salt = '00'",
        "UPDATE auditml_actor SET salt = " + repr("ab" * 32),
        "UPDATE auditml_actor SET known_as = 'mallory@bank.example'",
        "UPDATE auditml_actor SET person = NULL, known_as = NULL, salt = NULL, erased = 1",
        "UPDATE auditml_actor SET pseudonym = 'actor:0123456789abcdef'",
        "INSERT INTO auditml_actor (log_id, pseudonym, person, known_as, salt, created_at) "
        "SELECT log_id, 'actor:00000000000000aa', 'eve', 'eve', salt, created_at "
        "FROM auditml_actor",
    ],
    ids=[
        "deleted",
        "salt-null",
        "salt-short",
        "salt-other",
        "id",
        "erased-by-hand",
        "moved",
        "added",
    ],
)
def test_no_hand_edit_of_the_directory_lets_a_trainer_approve(
    pseudo: AuditLog, db_url: str, attack: str
) -> None:
    """Every raw-SQL edit of the directory is refused at decision time, naming the directory."""
    from tests.conftest import raw_sql

    raw_sql(db_url, [attack])
    size = pseudo.head().size
    _refused_as_tampered(pseudo, lambda: pseudo.approve("credit", "1", actor=ALICE), size)
    _refused_as_tampered(pseudo, lambda: pseudo.approve("credit", "1", actor=VAL), size)


def test_a_hand_edited_directory_still_displays_and_verify_deep_names_it(
    pseudo: AuditLog, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Displays show the unbound pseudonym bare; status works; `verify --deep` names the row."""
    from tests.conftest import raw_sql

    raw_sql(db_url, ["UPDATE auditml_actor SET known_as = 'mallory@bank.example'"])
    (train,) = list(pseudo.events(action="model.train"))
    assert train.event.actor.id not in pseudo.actors()
    assert pseudo.status("credit")["credit"].versions["1"].state == "trained"
    code, out, err = run_cli(["verify", "--deep", "--db", db_url], capsys)
    assert code != 0 and "does not open the commitment" in out + err
    assert "Traceback" not in out + err


def test_enrollment_puts_no_personal_data_on_the_log(pseudo: AuditLog) -> None:
    """The actor.enroll event holds the pseudonym and a salted hash, never the id or a name."""
    (enroll,) = list(pseudo.events(action="actor.enroll"))
    body = enroll.body.decode()
    assert "alice" not in body.lower() and enroll.event.subject == {"actor": enroll.event.actor.id}
    assert set(enroll.event.data) == {"commitment"}


def test_enrollment_cannot_be_appended_or_imported_to_bind_someone(
    pseudo: AuditLog, db_url: str
) -> None:
    """`append("actor.enroll")` is refused; an imported enrollment binds no one."""
    from tests.conftest import raw_sql

    with pytest.raises(InvalidInputError):
        pseudo.append(
            "actor.enroll",
            subject={"actor": INVENTED},
            data={"commitment": "0" * 64},
            actor=INVENTED,
        )
    raw_sql(db_url, ["DELETE FROM auditml_actor"])  # all enrollments now lack their rows
    size = pseudo.head().size
    _refused_as_tampered(pseudo, lambda: pseudo.approve("credit", "1", actor=ALICE), size)


def test_erasure_still_works_and_decisions_go_on_after_it(pseudo: AuditLog) -> None:
    """Erasing Alice breaks her binding on purpose: decisions carry on, her pseudonym is nobody."""
    pseudo.approve("credit", "1", actor=VAL)
    pseudo.record_training("credit", actor="carol@bank.example")  # Carol acts before the erasure
    pseudo.erase_actor(ALICE, request="DSR-1", reason="GDPR Art. 17 request", actor=ADMIN)
    train = next(pseudo.events(action="model.train"))
    assert pseudo.actors()[train.event.actor.id].known_as is None
    pseudo.approve("credit", "1", actor="carol@bank.example")
    pseudo.deploy("credit", "1", "production", actor=ADMIN)


def test_one_approver_across_the_pseudonym_switch_is_one_approval(
    pseudo: AuditLog, tmp_path: Path
) -> None:
    """Victor approving as his pseudonym, then by e-mail with the policy off, is one of two."""
    pseudo.approve("credit", "1", actor=VAL)
    _policy(pseudo, tmp_path, "[personal_data]\npseudonymous_actors = false\n")
    _policy(pseudo, tmp_path, "[approvals]\nproduction = 2\n")
    pseudo.approve("credit", "1", actor=VAL)
    with pytest.raises(PolicyDeniedError, match="1 distinct approval"):
        pseudo.deploy("credit", "1", "production", actor=ADMIN)
    pseudo.approve("credit", "1", actor="carol@bank.example")
    pseudo.deploy("credit", "1", "production", actor=ADMIN)


def test_a_shadow_may_not_skip_the_canary_the_policy_requires(rollout_log: AuditLog) -> None:
    """Shadow straight to 100% under a [rollout] rule is refused and recorded; a canary passes."""
    log = rollout_log
    log.deploy("credit", "2", "production", shadow=True, actor=OPS)
    _serve(log, {"2": 30})
    time.sleep(1.05)  # min_duration is 1s
    size = log.head().size
    with pytest.raises(PolicyDeniedError, match="as a shadow") as info:
        log.promote("credit", "2", "production", actor=OPS)
    assert info.value.rule == "rollout-required" and log.head().size == size + 1
    assert log.status("credit")["credit"].shadows("production") == ["2"]
    log.promote("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"2": 30})
    time.sleep(1.05)
    log.promote("credit", "2", "production", actor=OPS)
    assert log.status("credit")["credit"].split("production") == {"2": 100}


def test_a_shadows_records_and_time_never_count_as_canary_evidence(rollout_log: AuditLog) -> None:
    """Shadow, then a 10% canary, then 100% at once is refused: a shadow answers no one."""
    log = rollout_log
    log.deploy("credit", "2", "production", shadow=True, actor=OPS)
    _serve(log, {"2": 30})
    time.sleep(1.05)  # min_duration is 1s, min_requests below 30
    log.promote("credit", "2", "production", traffic="10%", actor=OPS)
    size = log.head().size
    with pytest.raises(PolicyDeniedError, match="only 0 of the") as info:
        log.promote("credit", "2", "production", actor=OPS)
    assert info.value.rule == "rollout-evidence" and log.head().size == size + 1
    assert log.status("credit")["credit"].split("production") == {"1": 90, "2": 10}


def test_a_known_as_set_by_the_caller_is_never_trusted(pseudo: AuditLog) -> None:
    """Actor(known_as=...) from the API neither hides a trainer nor puts her e-mail on the log."""
    from auditml.core.events import Actor, Draft

    for who in (Actor(id=ALICE, known_as="zzz"), Actor(id=INVENTED, known_as=ALICE)):
        size = pseudo.head().size
        with pytest.raises((PolicyDeniedError, InvalidInputError)) as info:
            pseudo.approve("credit", "1", actor=who)
        if isinstance(info.value, PolicyDeniedError):
            assert info.value.rule == "separation-of-duties"
            assert pseudo.head().size == size + 1
        else:
            assert pseudo.head().size == size
    who = Actor(id=ALICE, known_as="zzz")
    draft = Draft.build("model.evaluate", actor=who, subject={"model": "credit"}, data={})
    pseudo.append_many([draft], imported=True)
    for record in pseudo.events():
        assert ALICE.encode() not in record.body


def test_actors_on_a_hand_edited_directory_lists_the_rest_and_fails(
    pseudo: AuditLog, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml actors` names the row that no longer binds, exits 1, and lists the others."""
    from tests.conftest import raw_sql

    pseudo.approve("credit", "1", actor=VAL)
    raw_sql(db_url, [f"UPDATE auditml_actor SET known_as = 'x' WHERE known_as = '{ALICE}'"])
    code, out, err = run_cli(["actors", "--db", db_url], capsys)
    assert code == 1 and "does not open the commitment" in err and "Traceback" not in out + err
    assert VAL in out and ALICE not in out and "'x'" not in out
    code, out, err = run_cli(["actors", "--db", db_url, "--json"], capsys)
    assert code == 1 and VAL in out and "does not open" in err


def test_a_printed_name_given_later_is_bound_by_a_new_enrollment(
    pseudo: AuditLog, db_url: str
) -> None:
    """Victor names himself later: a second actor.enroll binds the name; a hand edit fails."""
    from auditml import Actor
    from tests.conftest import raw_sql

    pseudo.approve("credit", "1", actor=VAL)
    pseudo.approve("credit", "1", actor=Actor(id=VAL, name="Victor Alvarez"))
    enrolls = [r.event.subject["actor"] for r in pseudo.events(action="actor.enroll")]
    victor = next(p for p, e in pseudo.actors().items() if e.known_as == VAL)
    assert enrolls.count(victor) == 2 and pseudo.actors()[victor].name == "Victor Alvarez"
    pseudo.verify(deep=True)
    raw_sql(db_url, ["UPDATE auditml_actor SET name = 'Alice Martin' WHERE name IS NOT NULL"])
    with pytest.raises(VerificationError, match="does not open"):
        pseudo.verify(deep=True)


def test_after_a_trainers_erasure_someone_who_acted_before_it_may_approve(
    pseudo: AuditLog,
) -> None:
    """Alice is erased: Victor (enrolled before) may approve her v1, a newcomer may not."""
    pseudo.record_training("credit", actor=VAL)  # v2: Victor is enrolled now
    pseudo.erase_actor(ALICE, request="DSR-9", reason="Art. 17 request", actor=ADMIN)
    size = pseudo.head().size
    with pytest.raises(PolicyDeniedError, match="erased at event") as info:
        pseudo.approve("credit", "1", actor="newcomer@bank.example")
    assert info.value.rule == "separation-of-duties"
    assert pseudo.head().size == size + 2  # the newcomer's enrollment, and the denial
    pseudo.approve("credit", "1", actor=VAL)


def test_a_directory_made_before_enrollments_is_enrolled_once_on_request(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pre-enrollment row refuses decisions with a hint; `actors --enroll-existing` binds it."""
    from auditml import Actor
    from auditml.core.events import Draft
    from tests.conftest import raw_sql

    log, _ = AuditLog.init(db_url, origin="bank.example/legacy", actor=ADMIN)
    old = "actor:00000000000000a1"
    train = Draft.build(
        "model.train", actor=Actor(id=old), subject={"model": "credit", "version": "1"}
    )
    log._ledger.append_many([train], imported=True)  # what a pre-enrollment log holds
    _policy(log, tmp_path, PSEUDONYMOUS)
    raw_sql(
        db_url,
        [
            "INSERT INTO auditml_actor (log_id, pseudonym, person, known_as, created_at) "
            f"SELECT id, '{old}', '{ALICE}', '{ALICE}', '2026-12-03T00:00:00Z' FROM auditml_log"
        ],
    )
    with pytest.raises(VerificationError, match="enroll-existing"):
        log.record_training("credit", actor=VAL)  # the first decision after the upgrade
    code, out, err = run_cli(["actors", "--db", db_url, "--enroll-existing"], capsys)
    assert code == 0 and old in err and ALICE in out, (out, err)
    with pytest.raises(PolicyDeniedError, match="trained version"):
        log.approve("credit", "1", actor=ALICE)  # her training before the upgrade is still hers
    log.record_training("credit", actor=VAL)
    log.approve("credit", "2", actor=ALICE)
    assert log.enroll_existing_actors() == []  # once only: nothing is left to enroll
    log.verify(deep=True)
    log.close()
