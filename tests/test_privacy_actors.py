"""Pseudonymous actors and ``erase --actor`` (issue 18, events), on both backends.

With ``[personal_data] pseudonymous_actors = true`` new events carry a random
pseudonym as ``actor.id``; the person's id and printed name live in the off-log
actor directory, which ``erase --actor`` empties, leaving the pseudonym.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditml import AuditLog, InvalidInputError, PolicyDeniedError
from auditml._internal.keyfiles import PublicKeyFile, generate_key_file
from auditml.cards.build import build_card
from auditml.core.signing import FileSigner
from tests.conftest import raw_query, raw_sql, run_cli
from tests.test_privacy_erase import _files

ADMIN = "admin@bank.example"
ALICE = "alice.martin@bank.example"
VAL = "victor.alvarez@bank.example"
DPO = "dpo@bank.example"
PSEUDONYM = re.compile(r"^actor:[0-9a-f]{16}$")

#: Roles are given to pseudonyms' people by e-mail here, so the policy event names them.
ROLES_BY_EMAIL = f"""
[roles]
"{ALICE}" = ["scientist"]
"{VAL}" = ["validator"]
"{DPO}" = ["dpo"]
[permissions]
approve = ["validator"]
privacy = ["dpo"]
"""
#: No roles: no e-mail of a person is in any policy event.
PSEUDONYMOUS = "[personal_data]\npseudonymous_actors = true\n"


def _policy(log: AuditLog, tmp_path: Path, text: str) -> int:
    path = tmp_path / f"policy-{log.head().size}.toml"
    path.write_text(text, encoding="utf-8")
    return log.apply_policy(path, reason="privacy by design", actor=ADMIN).seq


@pytest.fixture
def log(db_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    """Yield a log with pseudonymous actors on (no roles), and credit v1 trained by ALICE."""
    opened, _ = AuditLog.init(db_url, origin="bank.example/actors", actor=ADMIN)
    _policy(opened, tmp_path, PSEUDONYMOUS)
    opened.record_training("credit", actor=ALICE)
    try:
        yield opened
    finally:
        opened.close()


def _key(tmp_path: Path) -> FileSigner:
    return generate_key_file(tmp_path / "val.key", b"a passphrase of some length")


def _signed_approval(log: AuditLog, tmp_path: Path) -> int:
    """Register VAL's key (printed name Victor Alvarez) and approve credit v1 signed with it."""
    signer = _key(tmp_path)
    log.register_key(PublicKeyFile(VAL, "Victor Alvarez", signer.public_key), actor=ADMIN)
    return log.approve("credit", "1", reason="VR-1", actor=VAL, signer=signer).seq


def test_new_events_carry_a_pseudonym_and_keep_the_id_off_the_log(log: AuditLog) -> None:
    """The actor is actor:<hex>; no hashed byte holds the e-mail; the directory does."""
    (train,) = list(log.events(action="model.train"))
    assert PSEUDONYM.match(train.event.actor.id)
    assert ALICE.encode() not in train.body and b"known_as" not in train.body
    for record in log.events():
        assert ALICE.encode() not in record.body
    entry = log.actors()[train.event.actor.id]
    assert (entry.known_as, entry.erased) == (ALICE, None)
    again = log.record_training("credit", actor=ALICE.upper())
    (second,) = list(log.events(start=again.seq, stop=again.seq + 1))
    assert second.event.actor.id == train.event.actor.id, "one person, one stable pseudonym"
    log.verify()


def test_without_the_policy_actors_are_recorded_as_given(db_url: str) -> None:
    """The default keeps ids as they are and writes no directory row."""
    with AuditLog.init(db_url, origin="bank.example/plain", actor=ADMIN)[0] as log:
        log.record_training("credit", actor=ALICE)
        (train,) = list(log.events(action="model.train"))
        assert train.event.actor.id == ALICE and log.actors() == {}


def test_self_approval_is_refused_across_pseudonyms_and_the_switch(
    db_url: str, tmp_path: Path
) -> None:
    """A trainer may not approve: by the same id, another spelling, or after the switch."""
    with AuditLog.init(db_url, origin="bank.example/sod", actor=ADMIN)[0] as log:
        log.record_training("credit", actor=ALICE)  # before: the e-mail is on the log
        _policy(log, tmp_path, PSEUDONYMOUS)
        log.record_training("credit", actor=ALICE)  # after: the pseudonym
        for version in ("1", "2"):
            for who in (ALICE, f" {ALICE.upper()}"):
                size = log.head().size
                with pytest.raises(PolicyDeniedError, match="trained version") as info:
                    log.approve("credit", version, actor=who)
                assert info.value.rule == "separation-of-duties"
                assert log.head().size == size + 1  # only the denial is recorded
        (denial, *_) = list(log.events(action="policy.denied"))
        assert ALICE.encode() not in denial.body
        log.approve("credit", "2", actor=VAL)


def test_roles_given_to_e_mails_still_apply_to_pseudonymous_actors(
    db_url: str, tmp_path: Path
) -> None:
    """The policy may name people by e-mail: their pseudonymous decisions keep their roles."""
    with AuditLog.init(db_url, origin="bank.example/roles", actor=ADMIN)[0] as log:
        _policy(log, tmp_path, PSEUDONYMOUS + ROLES_BY_EMAIL)
        log.record_training("credit", actor=ALICE)
        with pytest.raises(PolicyDeniedError) as info:
            log.approve("credit", "1", actor=DPO)
        assert info.value.rule == "role" and DPO not in str(info.value)
        receipt = log.approve("credit", "1", actor=VAL)
        (approval,) = list(log.events(action="model.approve"))
        assert approval.seq == receipt.seq and approval.event.data["role"] == "validator"
        assert VAL.encode() not in approval.body


def test_displays_show_the_person_before_erasure_and_the_pseudonym_after(
    log: AuditLog, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """status, log and the card name ALICE while the directory knows her, then the pseudonym."""
    (train,) = list(log.events(action="model.train"))
    pseudonym = train.event.actor.id
    code, before, _ = run_cli(["status", "--db", db_url], capsys)
    assert code == 0 and ALICE in before and pseudonym in before
    code, listed, _ = run_cli(["log", "--db", db_url], capsys)
    assert code == 0 and ALICE in listed
    assert ALICE in build_card(log, "credit", "1").training.trained_by  # type: ignore[union-attr]
    log.erase_actor(ALICE, request="DSR-7", reason="asked to be forgotten", actor=DPO)
    code, after, _ = run_cli(["status", "--db", db_url], capsys)
    assert code == 0 and ALICE not in after and pseudonym in after
    code, listed, _ = run_cli(["log", "--db", db_url], capsys)
    assert code == 0 and ALICE not in listed and pseudonym in listed
    card = build_card(log, "credit", "1")
    assert card.training is not None and card.training.trained_by == pseudonym


def test_erase_actor_records_one_event_and_verify_still_passes(log: AuditLog) -> None:
    """One privacy.erasure (scope actor) names the pseudonym, never the id; verify --deep passes."""
    (train,) = list(log.events(action="model.train"))
    size = log.head().size
    done = log.erase_actor(ALICE, request="DSR-7", reason="asked to be forgotten", actor=DPO)
    added = [r.event.action for r in log.events(start=size)]
    assert added == ["actor.enroll", "privacy.erasure"]  # the DPO's first act enrolls them
    assert done.seq == size + 1 and log.head().size == size + 2
    assert done.pseudonym == train.event.actor.id and done.id_events == []
    (event,) = list(log.events(action="privacy.erasure"))
    assert event.event.subject == {"actor": done.pseudonym}
    assert event.event.data["scope"] == "actor" and event.event.data["values"] == 0
    assert ALICE.encode() not in event.body
    entry = log.actors()[done.pseudonym]
    assert (entry.known_as, entry.name, entry.erased) == (None, None, done.seq)
    log.verify(deep=True)
    (erasure,) = log.retention().entries
    assert done.pseudonym in erasure.summary() and erasure.scope == "actor"


def test_after_erase_actor_no_database_file_holds_the_id(
    log: AuditLog, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite: the files hold the e-mail before and not after; PG: not in its table file either."""
    log.approve("credit", "1", actor=VAL)  # a second person, who stays
    url = log.store.url
    sqlite = db_url.startswith("sqlite")
    if sqlite:
        assert ALICE.encode() in b"".join(_files(db_url).values()), "the scan must see it before"
    code, out, _ = run_cli(
        [
            *("erase", "--actor", ALICE, "--request", "DSR-7", "--reason", "asked"),
            *("--by", DPO, "--db", db_url),
        ],
        capsys,
    )
    assert code == 0 and "Erased the identity behind actor:" in out
    assert "No event holds the erased id" in out
    rows = raw_query(url, "SELECT pseudonym, person, known_as, name FROM auditml_actor")
    assert not any(ALICE in str(v) or ALICE.upper() in str(v) for row in rows for v in row)
    assert any(VAL in str(row) for row in rows)
    if sqlite:
        for name, data in _files(db_url).items():
            assert ALICE.encode() not in data, f"the e-mail is still in {name}"
            assert ALICE.upper().encode() not in data, f"its spelling is still in {name}"
        return
    assert "VACUUM FULL" in out
    others = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()"
    )
    path = raw_query(url, "SELECT pg_relation_filepath('auditml_actor')")[0][0]
    # A transaction of another test that began before the erasure may still see the old
    # row, and VACUUM FULL must keep it for that transaction (the README says so). Once
    # none is left, a rewrite leaves no copy: wait for that moment, then look.
    for _ in range(100):
        if raw_query(url, others)[0][0] == 0:
            raw_sql(url, ["VACUUM FULL auditml_actor", "CHECKPOINT"])
            path = raw_query(url, "SELECT pg_relation_filepath('auditml_actor')")[0][0]
            data = bytes(raw_query(url, "SELECT pg_read_binary_file(%s)", (path,))[0][0])
            assert VAL.encode() in data, "the scan must see the person who stays"
            assert ALICE.encode() not in data
            return
        time.sleep(0.1)


def test_an_e_signature_keeps_the_printed_name_and_erasure_says_so(
    log: AuditLog, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The signature binds the pseudonym and shows 'Victor Alvarez'; erasure lists it as staying."""
    seq = _signed_approval(log, tmp_path)
    (entry,) = log.signatures()
    assert entry.name == "Victor Alvarez" and PSEUDONYM.match(entry.signer)
    (approval,) = list(log.events(action="model.approve"))
    assert approval.seq == seq and VAL.encode() not in approval.body
    assert log.verify_signatures() == 1
    code, out, _ = run_cli(
        [
            *("erase", "--actor", VAL, "--request", "DSR-8", "--reason", "left the bank"),
            *("--by", DPO, "--db", db_url, "--json"),
        ],
        capsys,
    )
    assert code == 0
    done = json.loads(out)
    assert done["stays_on_log"]["signatures"] == [seq]
    assert len(done["stays_on_log"]["key_registrations"]) == 1
    assert any("printed name" in line and "11.50" in line for line in done["stays"])
    assert VAL not in out
    (entry,) = log.signatures()
    assert entry.name == "Victor Alvarez"  # Part 11: the manifest still shows the name
    assert log.verify_signatures() == 1
    log.verify(deep=True)


def test_erasure_lists_events_recorded_before_the_switch(db_url: str, tmp_path: Path) -> None:
    """Events that hold the e-mail in their hashed bytes stay, and the result names them."""
    with AuditLog.init(db_url, origin="bank.example/before", actor=ADMIN)[0] as log:
        early = log.record_training("credit", actor=ALICE).seq
        _policy(log, tmp_path, PSEUDONYMOUS)
        log.record_training("credit", actor=ALICE)
        done = log.erase_actor(ALICE, request="DSR-9", reason="asked", actor=DPO)
        assert done.id_events == [early]
        assert any("cannot be changed without breaking" in line for line in done.stays())
        log.verify(deep=True)


def test_an_unknown_actor_is_refused_and_nothing_is_written(
    log: AuditLog, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An id the directory does not hold: a clear error, exit 2, no event, no row changed."""
    size, directory = log.head().size, log.actors()
    with pytest.raises(InvalidInputError, match="holds no one known as"):
        log.erase_actor("nobody@bank.example", request="DSR-1", reason="asked", actor=DPO)
    code, _, err = run_cli(
        [
            *("erase", "--actor", "nobody@bank.example", "--request", "DSR-1"),
            *("--reason", "asked", "--by", DPO, "--db", db_url),
        ],
        capsys,
    )
    assert code != 0 and "holds no one known as" in err
    assert log.head().size == size and log.actors() == directory


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--actor", ALICE, "--reason", "asked"], "needs --request"),
        (["--actor", ALICE, "--request", "DSR-1"], "needs --reason"),
        (["--actor", ALICE, "--subject", "c-1", "--request", "D", "--reason", "r"], "not both"),
        (["--request", "DSR-1", "--reason", "asked"], "say what to erase"),
        (["--actor", ALICE, "--request", f"about {ALICE}", "--reason", "r"], "names the actor"),
    ],
)
def test_bad_erase_commands_write_nothing(
    log: AuditLog,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    """A missing --request or --reason, both targets, none, or a request naming the person."""
    size, directory = log.head().size, log.actors()
    code, _, err = run_cli(["erase", *args, "--by", DPO, "--db", db_url], capsys)
    assert code != 0 and message in err
    assert log.head().size == size and log.actors() == directory


def test_erasing_without_the_privacy_permission_records_only_the_denial(
    db_url: str, tmp_path: Path
) -> None:
    """Someone without the privacy role: a denial event, and the directory is unchanged."""
    with AuditLog.init(db_url, origin="bank.example/deny", actor=ADMIN)[0] as log:
        _policy(log, tmp_path, PSEUDONYMOUS + ROLES_BY_EMAIL)
        log.record_training("credit", actor=ALICE)
        size, directory = log.head().size, log.actors()
        with pytest.raises(PolicyDeniedError) as info:
            log.erase_actor(ALICE, request="DSR-1", reason="asked", actor=ALICE)
        assert info.value.rule == "role"
        assert log.head().size == size + 1 and log.actors() == directory
        (denial,) = list(log.events(action="policy.denied"))
        assert ALICE.encode() not in denial.body
        done = log.erase_actor(ALICE, request="DSR-1", reason="asked", actor=DPO)
        assert log.actors()[done.pseudonym].known_as is None


def test_actors_command_lists_the_directory(
    log: AuditLog, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml actors` shows each pseudonym's person, and which were erased, by which event."""
    code, out, _ = run_cli(["actors", "--db", db_url, "--json"], capsys)
    (row,) = [r for r in json.loads(out) if r["id"] == ALICE]
    assert code == 0 and PSEUDONYM.match(row["pseudonym"]) and row["erased"] is None
    done = log.erase_actor(ALICE, request="DSR-7", reason="asked", actor=DPO)
    code, out, _ = run_cli(["actors", "--db", db_url], capsys)
    assert code == 0 and done.pseudonym in out and f"event {done.seq}" in out and ALICE not in out


def test_training_runs_runtime_segments_and_denials_carry_the_pseudonym(
    db_url: str, tmp_path: Path
) -> None:
    """training_run, a runtime recorder and a refused training keep the e-mail out of the log."""
    with AuditLog.init(db_url, origin="bank.example/paths", actor=ADMIN)[0] as log:
        roles = '[roles]\n"actor:00000000000000aa" = ["scientist"]\n'
        _policy(log, tmp_path, PSEUDONYMOUS + roles + '[permissions]\ntrain = ["scientist"]\n')
        with pytest.raises(PolicyDeniedError):
            log.record_training("credit", actor=VAL)
        _policy(log, tmp_path, PSEUDONYMOUS)
        with log.training_run(model="credit", actor=ALICE):
            pass
        with log.runtime("credit", env="production", actor=VAL, background=False) as rec:
            rec.record("req-1", version="1", output={"label": "ok"}, latency_ms=1)
        later = [r for r in log.events() if r.event.action != "policy.update"][1:]
        assert {r.event.action for r in later} >= {
            "policy.denied",
            "model.train",
            "runtime.segment",
        }
        for record in later:
            assert PSEUDONYM.match(record.event.actor.id), record.event.action
            assert ALICE.encode() not in record.body and VAL.encode() not in record.body


def test_a_decision_that_skipped_the_pseudonym_is_refused_not_written(log: AuditLog) -> None:
    """A service path that forgot to pseudonymize fails, rather than hash an e-mail for ever."""
    from auditml.core.decide import Outcome
    from auditml.core.events import Actor, Draft
    from auditml.errors import AppendError

    size = log.head().size
    draft = Draft.build(
        "model.evaluate",
        actor=Actor(id=ALICE),
        subject={"model": "credit", "version": "1"},
        data={"metrics": {"auc": 0.8}},
    )
    with pytest.raises(AppendError, match="pseudonymous actors"):
        log._ledger.decided(lambda view: Outcome(draft))
    assert log.head().size == size


def test_history_and_trace_name_the_person_until_erased(
    log: AuditLog, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """History and trace show the approver's and deployer's e-mail, then only their pseudonym."""
    from auditml.core.events import Actor

    log.approve("credit", "1", actor=Actor(id=VAL, name="Victor Alvarez"))
    log.deploy("credit", "1", "production", reason="go-live", actor=VAL)
    with log.runtime("credit", env="production", actor=ADMIN, background=False) as rec:
        rec.record("req-1", version="1", output={"label": "ok"}, latency_ms=1)
    (approval,) = list(log.events(action="model.approve"))
    assert b"Victor Alvarez" not in approval.body  # the printed name went off-log too
    shown = "Victor Alvarez <victor.alvarez@bank.example>"
    for args in (["history", "credit"], ["trace", "req-1"]):
        code, out, _ = run_cli([*args, "--db", db_url], capsys)
        assert code == 0 and shown in out.replace("\n", " "), args
    done = log.erase_actor(VAL, request="DSR-3", reason="asked", actor=DPO)
    for args in (["history", "credit"], ["trace", "req-1"]):
        code, out, _ = run_cli([*args, "--db", db_url], capsys)
        assert code == 0 and VAL not in out and "Victor" not in out, args
        assert done.pseudonym in out


def test_erasure_by_pseudonym_and_twice(log: AuditLog) -> None:
    """The pseudonym finds the person too; a second erasure says it was done, writing nothing."""
    (train,) = list(log.events(action="model.train"))
    pseudonym = train.event.actor.id
    with pytest.raises(InvalidInputError, match="names the actor itself"):
        log.erase_actor(pseudonym, request="DSR-4", reason=f"for {ALICE}", actor=DPO)
    done = log.erase_actor(pseudonym, request="DSR-4", reason="asked", actor=DPO)
    assert done.pseudonym == pseudonym
    size = log.head().size
    with pytest.raises(InvalidInputError, match="already erased"):
        log.erase_actor(pseudonym, request="DSR-5", reason="asked", actor=DPO)
    assert log.head().size == size


def test_init_adds_the_value_index_to_a_store_made_before_it(db_url: str) -> None:
    """A store without auditml_value_seg gets it from `auditml init`, which the README promises."""
    AuditLog.init(db_url, origin="bank.example/index", actor=ADMIN)[0].close()
    raw_sql(db_url, ["DROP INDEX auditml_value_seg"])
    sqlite = db_url.startswith("sqlite")
    find = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'auditml_value_seg'"
        if sqlite
        else "SELECT indexname FROM pg_indexes WHERE indexname = 'auditml_value_seg' "
        "AND schemaname = current_schema()"
    )
    assert raw_query(db_url, find) == []
    AuditLog.init(db_url, origin="bank.example/index", actor=ADMIN)[0].close()
    assert len(raw_query(db_url, find)) == 1


def test_the_report_names_people_until_erased_and_keeps_signers_printed_names(
    log: AuditLog, tmp_path: Path
) -> None:
    """Report JSON: the trainer's e-mail before, her pseudonym after; 'Victor Alvarez' stays."""
    from auditml.reports.build import build_report

    _signed_approval(log, tmp_path)
    before = build_report(log).model_dump_json()
    assert ALICE in before and "Victor Alvarez" in before
    done = log.erase_actor(ALICE, request="DSR-7", reason="asked", actor=DPO)
    log.erase_actor(VAL, request="DSR-8", reason="asked", actor=DPO)
    after = build_report(log).model_dump_json()
    assert ALICE not in after and VAL not in after and done.pseudonym in after
    assert "Victor Alvarez" in after  # the signature manifest keeps the printed name
