"""``auditml demo``: a credit-risk model's life, told in seconds with the real API.

A risk officer records the policy. A data scientist trains two versions of a
small logistic-regression model on generated data (pure Python), and they are
evaluated. She tries to approve her own version and is refused; a validator
approves each instead. A release engineer deploys version 1 to production and
starts version 2 there as a canary on 10% of traffic; promoting it at once is
refused (policy wants more evidence). The canary times out too often: an
incident is raised, and the canary monitor's check trips on the error rate and
rolls production back to version 1 by itself, the rollback naming the check.
An applicant's data is erased on request and the retention schedule is
applied. Finally the log is verified.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import random
import shutil
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from auditml._internal.keyfiles import PublicKeyFile, generate_key_file, load_signer
from auditml._internal.output import SQLITE_SIDECARS, write_output
from auditml.capture import current_run, track_training
from auditml.errors import InvalidInputError, PolicyDeniedError
from auditml.log import AuditLog

__all__ = ["run_demo"]

MARKER = ".auditml-demo"
#: What a demo writes in its folder, removed before it runs there again.
OUTPUTS = (
    *(f"audit.db{suffix}" for suffix in SQLITE_SIDECARS),
    "auditml.toml",
    "card.yaml",
    "audit-report.html",
    "audit-report.pdf",
    "data",
    "models",
    "cards",
)
ORIGIN = "demo.auditml.example/credit-risk"
MODEL = "credit-risk"
SCIENTIST = "dana@bank.example"
VALIDATOR = "victor@bank.example"
VALIDATOR_NAME = "Victor Valdés"
RELEASE = "rhea@bank.example"
OFFICER = "cora@bank.example"
MONITOR = "canary-monitor@bank.example"
FEATURES = ("income", "debt_ratio", "age", "late_payments")

POLICY = f"""\
# Who may do what with the credit-risk models; recorded on the log by `auditml policy apply`.
separation_of_duties = true
require_reason = ["deploy", "rollback", "retire"]
environments = ["staging", "production"]

[approvals]
default = 1

[roles]
"{SCIENTIST}" = ["developer"]
"{VALIDATOR}" = ["validator"]
"{RELEASE}" = ["release"]
"{OFFICER}" = ["risk-officer"]
"{MONITOR}" = ["monitor"]

[permissions]
train = ["developer"]
approve = ["validator", "developer"]
reject = ["validator"]
deploy = ["release"]
rollback = ["release", "monitor"]
retire = ["validator", "risk-officer"]
policy = ["risk-officer"]
privacy = ["risk-officer"]

[gates]
production = ["auc >= 0.65"]

[rollout]                  # version 2 reaches production through a canary
production = {{ canary = "10%", min_requests = 50, min_duration = "10m" }}

[monitor.production]       # `auditml monitor credit-risk --env production --act`
triggers = ["error_rate > 0.05", "latency_p95_ms > 250"]
min_requests = 15
window = "1h"
actor = "{MONITOR}"

[cards]
required = ["intended_use", "out_of_scope_use", "limitations", "ethical_considerations"]
complete_for = ["production"]

[retention]
runtime_values = "30d"     # the applicants' ids and features, kept off the log
runtime_records = "400d"   # at least six months (EU AI Act Art. 19)

[processing]
controller = "Example Bank SA, dpo@bank.example"
purposes = ["ranking retail credit applications for review", "post-market monitoring"]
data_subjects = ["retail credit applicants"]
categories = ["applicant id", "income", "debt ratio", "age", "late payments"]
recipients = ["credit underwriters", "model risk management"]
security = "values sealed per applicant (AES-GCM); erasure destroys the applicant's key"
"""

CARD = """\
# The human sections of the credit-risk model card; recorded by `auditml card update`.
overview: >-
  A logistic scorecard that estimates the probability that a retail applicant
  defaults within twelve months.
owners:
  - name: Credit Analytics
    contact: credit-analytics@bank.example
license: proprietary
task: tabular-classification
architecture: logistic regression on standardized features
input_format: "income, debt_ratio, age, late_payments (one row per applicant)"
output_format: probability of default, 0 to 1
intended_use: >-
  Rank retail credit applications for manual review by underwriters. The score
  informs, and never replaces, an underwriter's decision.
users:
  - retail credit underwriters
  - model-risk validators
out_of_scope_use: Business loans, mortgages, and any automated decline without review.
limitations: >-
  Trained on synthetic applicants; applicants under 30 are under-represented, and
  the score drifts when interest rates move sharply.
ethical_considerations:
  - name: Age as a feature (v2) may disadvantage young applicants
    mitigation: Approval rates by age band are monitored daily in production.
human_oversight: Every decline is reviewed by an underwriter before it is sent.
risk_rating: high
"""


def _can_write_pdf() -> bool:
    """Return whether WeasyPrint is installed, so cards and the report come as PDF too."""
    return importlib.util.find_spec("weasyprint") is not None


def _write_cards(log: AuditLog, folder: Path) -> str:
    """Write every version's card as HTML, Markdown, JSON, and PDF when WeasyPrint is there."""
    from auditml.cards import build_card
    from auditml.cards.render import render_card

    folder.mkdir(exist_ok=True)
    formats = ["html", "md", "json"]
    if _can_write_pdf():
        formats.append("pdf")
    for version in log.status(MODEL)[MODEL].versions:
        card = build_card(log, MODEL, version)
        for fmt in formats:
            write_output(folder / f"{MODEL}-v{version}.{fmt}", render_card(card, fmt), force=True)
    return f"cards/{MODEL}-v*.{{{','.join(formats)}}}"


def _write_report(log: AuditLog, out_dir: Path) -> str:
    """Write the audit report as HTML, and as PDF/A with its evidence when WeasyPrint is there."""
    from auditml.reports.build import build_report
    from auditml.reports.render import render_report

    report = build_report(log)
    write_output(out_dir / "audit-report.html", render_report(report, "html"), force=True)
    if not _can_write_pdf():
        return "audit-report.html (install auditml[pdf] for the PDF)"
    from auditml.reports.pdf import write_pdf_report

    write_pdf_report(log, report, out_dir / "audit-report.pdf", force=True)
    return "audit-report.html and audit-report.pdf (check it: auditml verify audit-report.pdf)"


def _prepare(out_dir: Path) -> None:
    """Make ``out_dir`` ready: create it, or clear what an earlier demo left there.

    What is cleared is removed, never followed: a link among the demo's files
    is deleted, not what it points to, and every file is then written new.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInputError(f"{out_dir} is a file; give --out a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).exists():
            raise InvalidInputError(
                f"{out_dir} is not empty and was not made by `auditml demo`; "
                "give --out an empty or new folder"
            )
        for name in OUTPUTS:
            path = out_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    (out_dir / "models").mkdir(exist_ok=True)
    write_output(out_dir / MARKER, b"made by `auditml demo`; safe to delete\n", force=True)
    # Inside a git checkout, the demo's own files must not mark the runs it records as
    # made from uncommitted changes: git ignores this folder's contents.
    write_output(out_dir / ".gitignore", b"# made by `auditml demo`\n*\n", force=True)


def _applicants(rng: random.Random, count: int) -> list[dict[str, float]]:
    """Generate loan applicants and whether each defaulted, from a fixed hidden rule."""
    rows = []
    for _ in range(count):
        income = rng.lognormvariate(10.6, 0.45) / 1000
        debt = min(max(rng.gauss(0.35, 0.15), 0.0), 1.2)
        age = float(rng.randint(19, 75))
        late = float(min(int(rng.expovariate(1.2)), 8))
        score = -1.2 - 0.025 * income + 3.1 * debt - 0.02 * (age - 40) + 0.55 * late
        default = 1.0 if rng.random() < 1 / (1 + math.exp(-score)) else 0.0
        rows.append(
            {
                "income": round(income, 2),
                "debt_ratio": round(debt, 3),
                "age": age,
                "late_payments": late,
                "default": default,
            }
        )
    return rows


def _write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=[*FEATURES, "default"])
    writer.writeheader()
    writer.writerows(rows)
    write_output(path, text.getvalue().encode(), force=True)


def _read_csv(path: Path) -> list[dict[str, float]]:
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _scale(rows: list[dict[str, float]], features: Sequence[str]) -> dict[str, tuple[float, float]]:
    stats = {}
    for name in features:
        values = [r[name] for r in rows]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) or 1.0
        stats[name] = (mean, std)
    return stats


def _predict(model: dict[str, Any], row: dict[str, float]) -> float:
    z = model["bias"]
    for name, weight in model["weights"].items():
        mean, std = model["scale"][name]
        z += weight * (row[name] - mean) / std
    return 1 / (1 + math.exp(-max(min(z, 30.0), -30.0)))


def _auc(labels: list[float], scores: list[float]) -> float:
    """Return the area under the ROC curve by ranking (ties averaged)."""
    order = sorted(range(len(scores)), key=scores.__getitem__)
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return 0.5
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y == 1.0)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def _metrics(model: dict[str, Any], rows: list[dict[str, float]]) -> dict[str, float]:
    scores = [_predict(model, r) for r in rows]
    labels = [r["default"] for r in rows]
    hits = sum((s >= 0.5) == (y == 1.0) for s, y in zip(scores, labels, strict=True))
    return {"auc": round(_auc(labels, scores), 4), "accuracy": round(hits / len(rows), 4)}


def _fit(
    train_csv: Path, features: Sequence[str], epochs: int, learning_rate: float
) -> dict[str, Any]:
    """Fit logistic regression by batch gradient descent; return the model and its metrics."""
    rows = _read_csv(train_csv)
    scale = _scale(rows, features)
    x = [[(r[f] - scale[f][0]) / scale[f][1] for f in features] for r in rows]
    y = [r["default"] for r in rows]
    weights = [0.0] * len(features)
    bias = 0.0
    n = len(rows)
    for _ in range(epochs):
        grad = [0.0] * len(features)
        grad_b = 0.0
        for xi, yi in zip(x, y, strict=True):
            z = bias + sum(w * v for w, v in zip(weights, xi, strict=True))
            err = 1 / (1 + math.exp(-max(min(z, 30.0), -30.0))) - yi
            grad_b += err
            for k, v in enumerate(xi):
                grad[k] += err * v
        bias -= learning_rate * grad_b / n
        weights = [w - learning_rate * g / n for w, g in zip(weights, grad, strict=True)]
    return {
        "features": list(features),
        "weights": dict(zip(features, weights, strict=True)),
        "bias": bias,
        "scale": scale,
    }


def _serve(
    log: AuditLog,
    out_dir: Path,
    rows: list[dict[str, float]],
    version: str,
    first: int,
    count: int,
    canary: str | None = None,
) -> int:
    """Score ``count`` applicants in production, one runtime record each.

    With ``canary``, every tenth request goes to that version (10% of traffic),
    and one in four of its requests ends in an error (a timeout upstream).
    """
    models = {
        v: json.loads((out_dir / "models" / f"{MODEL}-v{v}.json").read_text())
        for v in {version, canary or version}
    }
    with log.runtime(MODEL, env="production", actor="scoring-service", background=False) as rec:
        for n in range(first, first + count):
            serving = canary if canary is not None and n % 10 == 0 else version
            row = rows[n % len(rows)]
            score = round(_predict(models[serving], row), 4)
            slow = serving == canary and n % 40 == 0
            rec.record(
                f"req-{n:05d}",
                version=serving,
                output={"label": "approve" if score >= 0.5 else "refer", "score": score},
                latency_ms=round(3.0 + 2.0 * (n % 7) / 7, 3),
                error="timeout" if slow else None,
                subject=f"applicant-{n:05d}",
                features=row,
            )
    return count


def run_demo(out_dir: Path, console: Console) -> None:
    """Run the whole story into ``out_dir`` and print what happened and where it is."""
    if out_dir.is_symlink():
        raise InvalidInputError(
            f"{out_dir} is a symbolic link; auditml never writes through a link: "
            "give --out a real folder"
        )
    out_dir = out_dir.resolve()
    _prepare(out_dir)
    say = partial(console.print, markup=False)  # paths and names may hold [brackets]
    rng = random.Random(20261121)
    train_csv, holdout_csv = out_dir / "data" / "train.csv", out_dir / "data" / "holdout.csv"
    _write_csv(train_csv, _applicants(rng, 1200))
    _write_csv(holdout_csv, _applicants(rng, 600))
    policy_file = out_dir / "auditml.toml"
    write_output(policy_file, POLICY.encode(), force=True)
    url = f"sqlite:///{out_dir / 'audit.db'}"

    log, _ = AuditLog.init(url, origin=ORIGIN, actor=OFFICER, description="auditml demo")
    with log:
        where = f": the life of {MODEL!r}, recorded in {out_dir / 'audit.db'}"
        say(Text.assemble(("auditml demo", "bold"), where))
        log.apply_policy(policy_file, reason="model-risk policy for credit models", actor=OFFICER)
        say(f"  1. {OFFICER} recorded the policy (roles, a production gate auc >= 0.65)")
        # The validator signs approvals with a key registered on the log (21 CFR 11.50).
        key_file = out_dir / "keys" / "victor.key"
        victor = load_signer(key_file) if key_file.exists() else generate_key_file(key_file, None)
        log.register_key(
            PublicKeyFile(VALIDATOR, VALIDATOR_NAME, victor.public_key),
            reason="the validator's e-signature key",
            actor=OFFICER,
        )
        say(f"     {OFFICER} registered {VALIDATOR_NAME}'s e-signature key (keys/victor.key)")

        @track_training(
            model=MODEL,
            log=log,
            actor=SCIENTIST,
            datasets={"train": train_csv},
            tags={"team": "credit-analytics"},
            exclude=("train_csv",),
        )
        def train(
            train_csv: Path, features: Sequence[str], epochs: int, learning_rate: float
        ) -> dict[str, float]:
            """Train one version, save it, and return its training metrics."""
            model = _fit(train_csv, features, epochs, learning_rate)
            run = current_run()
            assert run is not None
            path = out_dir / "models" / f"{MODEL}-v{run.version}.json"
            write_output(path, json.dumps(model, indent=1).encode(), force=True)
            run.add_artifact("model", path)
            return _metrics(model, _read_csv(train_csv))

        holdout = _read_csv(holdout_csv)
        for n, (features, epochs) in enumerate(((FEATURES[:2], 60), (FEATURES, 120))):
            train(train_csv, features, epochs, 0.5)
            run = train.last_run  # type: ignore[attr-defined]
            version = run.version
            model = json.loads((out_dir / "models" / f"{MODEL}-v{version}.json").read_text())
            young = [r for r in holdout if r["age"] < 30]
            metrics = _metrics(model, holdout)
            log.evaluate(
                MODEL,
                version,
                metrics=metrics,
                dataset=holdout_csv,
                slices={
                    "age<30": _metrics(model, young),
                    "age>=30": _metrics(model, [r for r in holdout if r["age"] >= 30]),
                },
                actor=VALIDATOR,
            )
            say(
                f"{'    ' if n else '  2.'} {SCIENTIST} trained v{version} on "
                f"{len(features)} features; "
                f"holdout auc {metrics['auc']:.3f} (event {run.receipt.seq})"
            )

        try:
            log.approve(MODEL, "2", reason="looks good to me", actor=SCIENTIST)
        except PolicyDeniedError as denied:
            say(
                f"  3. {SCIENTIST} tried to approve her own v2: refused by rule "
                f"{denied.rule!r}, and the attempt is on the log (event {denied.seq})"
            )
        for version in ("1", "2"):
            log.approve(
                MODEL,
                version,
                reason="validation report VR-2026-11 passed",
                actor=VALIDATOR,
                signer=victor,
                name=VALIDATOR_NAME,
                meaning="approval",
            )
        say(
            f"  4. {VALIDATOR} approved v1 and v2, signed with his registered key "
            "(a second person, as policy requires)"
        )
        log.deploy(MODEL, "1", "staging", reason="first release candidate", actor=RELEASE)
        try:
            log.deploy(MODEL, "1", "production", reason="go-live", actor=RELEASE)
        except PolicyDeniedError as denied:
            say(
                f"     production refused v1 first: its model card lacks the sections policy "
                f"requires (rule {denied.rule!r}, event {denied.seq})"
            )
        card_file = out_dir / "card.yaml"
        write_output(card_file, CARD.encode(), force=True)
        log.update_card(MODEL, card_file, reason="first card for go-live", actor=SCIENTIST)
        say(f"     {SCIENTIST} wrote the card's human sections (card.yaml, a card.update event)")
        log.deploy(MODEL, "1", "production", reason="go-live", actor=RELEASE)
        serve = partial(_serve, log, out_dir, holdout)
        served = serve("1", 0, 40)
        log.deploy(MODEL, "2", "staging", reason="more features", actor=RELEASE)
        log.deploy(
            MODEL, "2", "production", traffic="10%", reason="better holdout auc", actor=RELEASE
        )
        served += serve("1", 40, 160, canary="2")
        say(
            f"  5. {RELEASE} deployed v1 to production and v2 to staging, then started v2 "
            "in production as a canary on 10% of traffic"
        )
        try:
            log.promote(MODEL, "2", "production", reason="looks fine", actor=RELEASE)
        except PolicyDeniedError as denied:
            say(
                f"     promoting the canary at once was refused: it had not served the requests "
                f"and time policy requires (rule {denied.rule!r}, event {denied.seq})"
            )
        incident = log.open_incident(
            MODEL,
            "2",
            "the v2 canary times out on one request in four",
            severity="high",
            environment="production",
            reference="INC-4711",
            actor=RELEASE,
        )
        check = log.monitor(MODEL, "production", act=True)
        assert check.rollback is not None, check.verdict  # the story: the monitor rolls back
        canary_rate = check.data["statistics"]["error_rate"]
        say(
            f"  6. an incident ({incident.id}) was raised on the v2 canary; the canary monitor's "
            f"check (event {check.check.seq}) tripped on its error rate ({canary_rate:.0%} > 5%) "
            f"and rolled production back to v1 by itself (event {check.rollback.seq})"
        )
        served += serve("1", 200, 20)
        say(
            f"     production served {served} requests meanwhile, each a runtime record "
            "(the applicant kept off the log as a commitment)"
        )
        erased = log.erase(
            "applicant-00007",
            request="DSR-2026-001",
            reason="the applicant asked to be forgotten (GDPR Art. 17)",
            actor=OFFICER,
        )
        applied = log.apply_retention(actor=OFFICER)
        say(
            f"  7. {OFFICER} erased applicant-00007's {erased.values} values (request "
            f"DSR-2026-001, event {erased.seq}) and applied retention (event {applied.seq}); "
            "the records and every proof stay"
        )
        report = log.verify(deep=True)
        say(f"  8. verified: {report.size} events, intact; root {report.root[:16]}…")
        log.checkpoint()
        written = _write_cards(log, out_dir / "cards")
        say(f"  9. signed a checkpoint and wrote the card of each version: {written}")
        say(f" 10. wrote the audit report: {_write_report(log, out_dir)}")

        state = log.status(MODEL)[MODEL]
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("version", "state", "runs in", "approved by"):
            table.add_column(column)
        for vs in state.versions.values():
            table.add_row(
                vs.version,
                vs.state,
                ", ".join(vs.running_in) or "-",
                ", ".join(dict.fromkeys(a.actor for a in vs.approvals)),
            )
        say("")
        say(table)
        say("")
        say(f"Outputs in {out_dir}:")
        say("  audit.db           the log (SQLite)      auditml.toml  the policy recorded on it")
        say("  data/              generated datasets    models/       the two trained versions")
        say("  card.yaml          the cards' sections   cards/        each version's model card")
        if (out_dir / "audit-report.pdf").exists():
            say("  audit-report.*     the audit report (HTML; the PDF carries its own evidence)")
        else:
            say("  audit-report.html  the audit report (install auditml[pdf] for the PDF)")
        say("  keys/victor.key    the validator's e-signature key (kept when the demo runs again)")
        say("Look around:")
        say(f"  auditml log --db {url}")
        say(f"  auditml status --db {url}")
        say(f"  auditml history {MODEL} --db {url}")
        say(f"  auditml log --action monitor.check --json --db {url}")
        say(f"  auditml trace req-00042 --db {url}")
        say(f"  auditml runtime stats --db {url}")
        say(f"  auditml retention show --db {url}")
        say(f"  auditml card diff {MODEL} 1 2 --db {url}")
        pdf = out_dir / "audit-report.pdf"
        say(f"  auditml verify {pdf}" if pdf.exists() else f"  auditml verify --db {url}")
