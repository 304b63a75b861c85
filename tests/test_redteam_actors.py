"""Red-team attacks on pseudonymous actors bound to the log by ``actor.enroll`` commitments.

Each test is one way in, shown to be closed; an ``xfail(strict=True)`` is one
that still gets through, described in its reason.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditml import Actor, AuditLog, Draft, InvalidInputError, PolicyDeniedError, VerificationError
from auditml.core.policy import person
from tests.conftest import raw_query, raw_sql, run_cli
from tests.test_redteam_today import ADMIN, ALICE, PSEUDONYMOUS, VAL, _policy

CAROL = "carol.dupont@bank.example"
BOB = "bob.stone@bank.example"
FORGED = "actor:00000000000000ee"


@pytest.fixture
def pseudo(db_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    """Yield a log with pseudonymous actors, two approvals for production, v1 trained by ALICE."""
    opened, _ = AuditLog.init(db_url, origin="bank.example/redteam18", actor=ADMIN)
    _policy(opened, tmp_path, PSEUDONYMOUS + "[approvals]\nproduction = 2\n")
    opened.record_training("credit", actor=Actor(id=ALICE, name="Alice Martin"))
    try:
        yield opened
    finally:
        opened.close()


def _pseudonym_of(log: AuditLog, who: str) -> str:
    (entry,) = [e for e in log.actors().values() if e.known_as and person(e.known_as) == who]
    return entry.pseudonym


def _refused_as_tampered(log: AuditLog, action: Any, size: int) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        action()
    assert info.value.kind == "directory" and log.head().size == size
    return info.value


# -- one person, one pseudonym ------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        f" {ALICE.upper()} ",
        ALICE.replace("@", "\u200b@"),  # zero-width space (Cf)
        ALICE.replace(".", "\u2060.", 1),  # word joiner (Cf)
        ALICE + "\u00ad",  # soft hyphen (Cf)
        "\uff21" + ALICE[1:],  # fullwidth A: NFKC folds it
        ALICE.replace("@", "\u034f@"),  # combining grapheme joiner (Mn, default ignorable)
        ALICE + "\u3164",  # Hangul filler (Lo, default ignorable)
        ALICE + "\ufe0f",  # variation selector 16 (Mn)
        ALICE + "\U000e0101",  # variation selector 18 (Mn)
        ALICE + "\u180b",  # Mongolian free variation selector (Mn)
    ],
    ids=["case-space", "zwsp", "wj", "shy", "fullwidth", "cgj", "filler", "vs16", "vs18", "fvs1"],
)
def test_an_invisible_variant_of_the_trainers_id_is_still_the_trainer(
    pseudo: AuditLog, variant: str
) -> None:
    """Fixed here: a default-ignorable mark (U+034F, U+3164, a VS) mints no second Alice."""
    size = pseudo.head().size
    with pytest.raises(PolicyDeniedError, match="trained version") as info:
        pseudo.approve("credit", "1", actor=variant)
    assert info.value.rule == "separation-of-duties"
    assert len(pseudo.actors()) == 1  # no second pseudonym was drawn or enrolled
    assert [r.event.action for r in pseudo.events(start=size)] == ["policy.denied"]


def test_one_approver_under_email_then_pseudonym_variants_counts_once(
    db_url: str, tmp_path: Path
) -> None:
    """Val approves by e-mail, then (pseudonyms on) by a variant and his pseudonym: once."""
    log, _ = AuditLog.init(db_url, origin="bank.example/switch", actor=ADMIN)
    with log:
        log.record_training("credit", actor=ALICE)
        log.approve("credit", "1", actor=VAL)  # the e-mail is on the log
        _policy(log, tmp_path, PSEUDONYMOUS + "[approvals]\nproduction = 2\n")
        log.approve("credit", "1", actor=VAL.upper() + "\u034f")
        log.approve("credit", "1", actor=_pseudonym_of(log, person(VAL)))
        with pytest.raises(PolicyDeniedError, match="1 distinct approval"):
            log.deploy("credit", "1", "production", actor=ADMIN)
        log.approve("credit", "1", actor=CAROL)
        log.deploy("credit", "1", "production", actor=ADMIN)


# -- the lookup column is only a hint -------------------------------------------------------


def test_a_moved_lookup_hint_cannot_file_a_newcomer_under_anothers_pseudonym(
    pseudo: AuditLog, db_url: str
) -> None:
    """Fixed here: Val's row hinted as Carol; Carol's first act was filed under Val's pseudonym."""
    pseudo.approve("credit", "1", actor=VAL)
    val = _pseudonym_of(pseudo, person(VAL))
    raw_sql(db_url, [("UPDATE auditml_actor SET person = %s WHERE known_as = %s", (CAROL, VAL))])
    size = pseudo.head().size
    err = _refused_as_tampered(pseudo, lambda: pseudo.approve("credit", "1", actor=CAROL), size)
    assert "lookup column" in str(err)
    approvals = [r.event.actor.id for r in pseudo.events(action="model.approve")]
    assert approvals == [val]  # Val's approval alone: Carol's was not filed under it


def test_a_moved_lookup_hint_cannot_make_erasure_forget_the_wrong_person(
    pseudo: AuditLog, db_url: str
) -> None:
    """Fixed here: hints of Alice and Val swapped, erasing Alice erased Val; now refused, named."""
    pseudo.approve("credit", "1", actor=VAL)
    alice, val = _pseudonym_of(pseudo, person(ALICE)), _pseudonym_of(pseudo, person(VAL))
    swap = "UPDATE auditml_actor SET person = %s WHERE pseudonym = %s"
    raw_sql(db_url, [(swap, ("tmp", alice)), (swap, (person(ALICE), val)), (swap, (VAL, alice))])
    size = pseudo.head().size
    err = _refused_as_tampered(
        pseudo,
        lambda: pseudo.erase_actor(ALICE, request="DSR-9", reason="Art. 17", actor=ADMIN),
        size,
    )
    assert "lookup column" in str(err)
    left = raw_query(db_url, "SELECT pseudonym, known_as FROM auditml_actor")
    assert sorted(left) == sorted([(alice, ALICE), (val, VAL)])  # neither was erased
    raw_sql(db_url, [(swap, ("tmp", val)), (swap, (person(ALICE), alice)), (swap, (VAL, val))])
    done = pseudo.erase_actor(ALICE, request="DSR-9", reason="Art. 17 request", actor=ADMIN)
    assert done.pseudonym == alice  # restored, the erasure forgets the right person
    assert sorted(raw_query(db_url, "SELECT pseudonym, known_as FROM auditml_actor")) == sorted(
        [(alice, None), (val, VAL), (_pseudonym_of(pseudo, ADMIN), ADMIN)]
    )


# -- raw SQL on the directory: refused, never a crash ----------------------------------------


@pytest.mark.parametrize(
    "attack",
    [
        "UPDATE auditml_actor SET erased = 'x'",
        "UPDATE auditml_actor SET erased = 7",
        "UPDATE auditml_actor SET salt = upper(salt)",
        "UPDATE auditml_actor SET salt = 'zz' || substr(salt, 3)",
        "UPDATE auditml_actor SET known_as = upper(known_as)",
        "UPDATE auditml_actor SET known_as = known_as || ' '",
        "UPDATE auditml_actor SET person = 'mallory@bank.example'",
        "DROP TABLE auditml_actor",
    ],
    ids=[
        "erased-text",
        "erased-int",
        "salt-upper",
        "salt-nonhex",
        "id-upper",
        "id-space",
        "hint",
        "drop",
    ],
)
def test_odd_hand_edits_never_crash_a_decision(
    pseudo: AuditLog, db_url: str, attack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fixed here (erased-text crashed with ValueError): each edit is refused or changes nothing."""
    if attack.endswith("'x'") and not db_url.startswith("sqlite"):
        attack = "UPDATE auditml_actor SET erased = -1"  # PostgreSQL types the column
    raw_sql(db_url, [attack])
    size = pseudo.head().size
    if "erased" in attack or "upper(salt)" in attack:  # the log says who is erased; hex is hex
        with pytest.raises(PolicyDeniedError, match="trained version"):
            pseudo.approve("credit", "1", actor=ALICE)
        pseudo.approve("credit", "1", actor=VAL)
        assert pseudo.actors()[_pseudonym_of(pseudo, person(ALICE))].known_as == ALICE
        return
    _refused_as_tampered(pseudo, lambda: pseudo.approve("credit", "1", actor=ALICE), size)
    _refused_as_tampered(pseudo, lambda: pseudo.approve("credit", "1", actor=VAL), size)
    code, out, err = run_cli(["verify", "--deep", "--db", db_url], capsys)
    assert code != 0 and "actor directory" in out + err


def test_a_salt_column_dropped_under_a_running_process_is_a_clear_error(
    pseudo: AuditLog, db_url: str
) -> None:
    """A salt column dropped while a process runs: the next decision names the directory."""
    pseudo.approve("credit", "1", actor=VAL)  # the process has read the directory once
    raw_sql(db_url, ["ALTER TABLE auditml_actor DROP COLUMN salt"])
    size = pseudo.head().size
    with pytest.raises(VerificationError) as info:
        pseudo.approve("credit", "1", actor=CAROL)
    assert info.value.kind == "directory" and pseudo.head().size == size


# -- forging a binding ------------------------------------------------------------------------


def test_an_enrollment_cannot_be_appended_live_through_append_many(pseudo: AuditLog) -> None:
    """A live actor.enroll draft given to append_many is refused; nothing is written."""
    draft = Draft.build(
        "actor.enroll",
        actor=Actor(id=FORGED),
        subject={"actor": FORGED},
        data={"commitment": "0" * 64},
    )
    size = pseudo.head().size
    with pytest.raises(InvalidInputError, match=r"actor\.enroll"):
        pseudo.append_many([draft])
    assert pseudo.head().size == size


def test_an_imported_enrollment_with_its_row_binds_no_one(pseudo: AuditLog, db_url: str) -> None:
    """An imported actor.enroll (as the pseudonym: refused) plus a forged row: it may not act."""
    from auditml.core.privacy import actor_commitment

    salt = bytes(range(32))
    enroll: dict[str, Any] = {
        "subject": {"actor": FORGED},
        "data": {"commitment": actor_commitment(salt, "eve@bank.example")},
        "imported": True,
    }
    with pytest.raises(InvalidInputError, match="never drew it"):  # as the forged pseudonym
        pseudo.append("actor.enroll", actor=FORGED, **enroll)
    pseudo.append("actor.enroll", actor=ADMIN, **enroll)  # goes on, marked imported
    raw_sql(
        db_url,
        [
            (
                "INSERT INTO auditml_actor (log_id, pseudonym, person, known_as, salt, created_at) "
                "SELECT log_id, %s, %s, %s, %s, created_at FROM auditml_actor LIMIT 1",
                (FORGED, "eve@bank.example", "eve@bank.example", salt.hex()),
            )
        ],
    )
    size = pseudo.head().size
    _refused_as_tampered(pseudo, lambda: pseudo.approve("credit", "1", actor=FORGED), size)
    assert FORGED not in pseudo.actors()


def test_an_imported_actor_erasure_does_not_unbind_the_trainer(pseudo: AuditLog) -> None:
    """An imported privacy.erasure (scope actor) of Alice's pseudonym leaves her the trainer."""
    alice = _pseudonym_of(pseudo, person(ALICE))
    data = {"request": "R", "reason": "r", "values": 0, "scope": "actor"}
    pseudo.append("privacy.erasure", subject={"actor": alice}, data=data, imported=True)
    with pytest.raises(PolicyDeniedError, match="trained version"):
        pseudo.approve("credit", "1", actor=ALICE)
    assert pseudo.actors()[alice].known_as == ALICE


def test_a_later_enrollment_of_a_taken_pseudonym_cannot_rebind_it(
    pseudo: AuditLog, db_url: str
) -> None:
    """An imported re-enrollment of Alice's pseudonym to Eve, row rewritten to match: refused."""
    from auditml.core.privacy import actor_commitment

    alice, salt = _pseudonym_of(pseudo, person(ALICE)), bytes(32)
    pseudo.append(
        "actor.enroll",
        subject={"actor": alice},
        data={"commitment": actor_commitment(salt, "eve@bank.example")},
        actor=alice,
        imported=True,
    )
    raw_sql(
        db_url,
        [
            (
                "UPDATE auditml_actor SET person = %s, known_as = %s, salt = %s "
                "WHERE pseudonym = %s",
                ("eve@bank.example", "eve@bank.example", salt.hex(), alice),
            )
        ],
    )
    size = pseudo.head().size
    _refused_as_tampered(pseudo, lambda: pseudo.approve("credit", "1", actor=ALICE), size)


# -- personal data and erasure ----------------------------------------------------------------


def test_no_id_or_name_reaches_the_hashed_log(pseudo: AuditLog) -> None:
    """Enrollments, approvals, a recorded denial and an erasure hold no id or printed name."""
    with pytest.raises(PolicyDeniedError):
        pseudo.approve("credit", "1", actor=Actor(id=ALICE, name="Alice Martin"))
    pseudo.approve("credit", "1", actor=Actor(id=VAL, name="Victor Alvarez"))
    pseudo.erase_actor(VAL, request="DSR-3", reason="Art. 17 request", actor=ADMIN)
    bodies = [r.body.decode().lower() for r in pseudo.events(start=2)]
    for needle in ("alice", "martin", "victor", "alvarez", "admin@"):
        assert not any(needle in body for body in bodies), needle
    assert "policy.denied" in " ".join(bodies)


def test_an_actors_extra_fields_do_not_carry_personal_data_to_the_log(pseudo: AuditLog) -> None:
    """An extra field such as email on the actor stays off the hashed log (or is refused)."""
    try:
        pseudo.approve("credit", "1", actor=Actor(id=VAL, email="victor@home.example"))
    except InvalidInputError:
        return
    bodies = [r.body for r in pseudo.events(action="model.approve")]
    assert not any(b"victor@home.example" in body for body in bodies)


def test_an_erased_identity_is_not_in_the_sqlite_files(tmp_path: Path) -> None:
    """After erase --actor the id, name and salt are in neither the database file nor its WAL."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log, _ = AuditLog.init(url, origin="bank.example/erase", actor=ADMIN)
    with log:
        _policy(log, tmp_path, PSEUDONYMOUS)
        log.record_training("credit", actor=Actor(id=ALICE, name="Alice Martin"))
        (salt,) = raw_query(url, "SELECT salt FROM auditml_actor WHERE known_as = ?", (ALICE,))[0]
        log.erase_actor(ALICE, request="DSR-4", reason="Art. 17 request", actor=ADMIN)
        files = [p for p in tmp_path.iterdir() if p.name.startswith("audit.db")]
        raw = b"".join(p.read_bytes() for p in files)
    for needle in (ALICE.encode(), b"Alice Martin", str(salt).encode(), bytes.fromhex(salt)):
        assert needle not in raw


def test_an_erased_identity_is_in_no_table(pseudo: AuditLog, db_url: str) -> None:
    """After erase --actor no table the store holds names Alice or keeps her salt."""
    (salt,) = raw_query(db_url, "SELECT salt FROM auditml_actor WHERE known_as = %s", (ALICE,))[0]
    pseudo.erase_actor(ALICE, request="DSR-5", reason="Art. 17 request", actor=ADMIN)
    if db_url.startswith("sqlite"):
        tables = [
            r[0] for r in raw_query(db_url, "SELECT name FROM sqlite_master WHERE type='table'")
        ]
    else:
        tables = [
            r[0]
            for r in raw_query(
                db_url,
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()",
            )
        ]
    for table in tables:
        rows = str(raw_query(db_url, f"SELECT * FROM {table}"))
        for needle in (ALICE, "Alice Martin", str(salt)):
            assert needle not in rows, (table, needle)


def test_an_erased_trainer_who_comes_back_may_not_approve_her_version(pseudo: AuditLog) -> None:
    """Alice trains, is erased, acts again under her e-mail: her approval of v1 is refused."""
    pseudo.erase_actor(ALICE, request="DSR-6", reason="Art. 17 request", actor=ADMIN)
    with pytest.raises(PolicyDeniedError):
        pseudo.approve("credit", "1", actor=ALICE)


# -- concurrency --------------------------------------------------------------------------------


def _act_as_bob(url: str, barrier: Any, out: Any) -> None:
    """Child process: wait for the others, then act as Bob for the first time."""
    log = AuditLog.open(url)
    try:
        barrier.wait(30)
        out.put(("ok", log.record_training("credit", actor=BOB).seq))
    except Exception as exc:  # reported to the parent, which fails the test
        out.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        log.close()


def test_processes_enrolling_one_person_at_once_draw_one_pseudonym(pseudo: AuditLog) -> None:
    """Four processes act as Bob at once: one pseudonym, one enrollment, one row, all bound."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_act_as_bob, args=(pseudo.url, barrier, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
    assert [r[0] for r in results] == ["ok"] * 4, results
    enrolls = list(pseudo.events(action="actor.enroll"))
    bob = _pseudonym_of(pseudo, person(BOB))
    assert [e.event.subject["actor"] for e in enrolls].count(bob) == 1
    trains = [r.event.actor.id for r in pseudo.events(action="model.train")][1:]
    assert trains == [bob] * 4
    assert len(enrolls) == len(pseudo.actors())  # every row binds: no half-written state
    pseudo.approve("credit", "1", actor=VAL)  # the bound directory still holds


# -- the command line on a tampered directory ----------------------------------------------------


@pytest.fixture
def tampered(pseudo: AuditLog, db_url: str) -> AuditLog:
    """Return the pseudo log with Alice's directory row rewritten to name Mallory."""
    raw_sql(db_url, ["UPDATE auditml_actor SET known_as = 'mallory@bank.example'"])
    return pseudo


@pytest.mark.parametrize(
    "args",
    [
        ["approve", "credit", "1", "--actor", VAL, "--reason", "x"],
        ["approve", "credit", "1", "--actor", ALICE, "--reason", "x"],
        ["erase", "--actor", ALICE, "--request", "DSR-1", "--reason", "Art. 17", "--by", ADMIN],
        ["verify", "--deep"],
    ],
    ids=["approve-other", "approve-trainer", "erase", "verify-deep"],
)
def test_the_cli_on_a_tampered_directory_names_it_and_fails(
    tampered: AuditLog, db_url: str, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """approve, erase and verify --deep exit non-zero, name the directory, write nothing."""
    size = tampered.head().size
    code, out, err = run_cli([*args, "--db", db_url], capsys)
    assert code not in (0, 70) and "actor directory" in out + err
    assert tampered.head().size == size


def test_auditml_actors_on_a_tampered_directory_says_so(
    tampered: AuditLog, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml actors` names the row that does not bind and exits non-zero."""
    code, out, err = run_cli(["actors", "--db", db_url], capsys)
    assert code != 0 and "actor directory" in out + err and "empty" not in out + err


def test_verify_deep_sees_a_printed_name_rewritten_by_hand(
    pseudo: AuditLog, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Alice's printed name changed to Victor's by raw SQL: verify --deep fails."""
    raw_sql(db_url, ["UPDATE auditml_actor SET name = 'Victor Alvarez'"])
    code, _, _ = run_cli(["verify", "--deep", "--db", db_url], capsys)
    assert code != 0
