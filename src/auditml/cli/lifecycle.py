"""The lifecycle commands of ``auditml``: train to retire, incidents, status, history, policy, demo.

A refusal by policy exits with status 3 and says which rule refused and what
would satisfy it.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from auditml.cli._common import (
    ActorOption,
    DbOption,
    JsonOption,
    KeyWhenUsed,
    ModelArgument,
    OnlyModelArgument,
    ReasonOption,
    Styled,
    actor_names,
    app,
    done,
    err,
    errors,
    group,
    note_imported,
    notice,
    open_log,
    out,
    sync_alias,
    table,
    tagged,
    utc,
    who,
)
from auditml.core.canonical import loads_strict
from auditml.core.events import IMPORTED_NOTE, is_imported
from auditml.core.policy import DEFAULT_POLICY, PolicyReview
from auditml.core.rollout import parse_percent, undecided_because
from auditml.core.state import ModelState
from auditml.errors import InvalidInputError

EnvOption = Annotated[
    str, typer.Option("--env", "-e", metavar="ENV", help="Environment, e.g. staging, production.")
]
ParamPairs = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        metavar="NAME=VALUE",
        help="A hyperparameter, e.g. depth=6 (repeatable; a value that parses as JSON is typed).",
    ),
]
MetricPairs = Annotated[
    list[str] | None,
    typer.Option(
        "--metric", metavar="NAME=VALUE", help="A metric, e.g. auc=0.87 (repeatable; a number)."
    ),
]
TagPairs = Annotated[
    list[str] | None,
    typer.Option("--tag", metavar="NAME=VALUE", help="A tag, e.g. team=risk (repeatable; text)."),
]
SignOption = Annotated[
    Path | None,
    typer.Option(
        "--sign-with",
        metavar="KEY",
        help="Sign it (21 CFR Part 11) with your registered key file; its passphrase comes "
        "from $AUDITML_KEY_PASSPHRASE or is asked for.",
    ),
]
MeaningOption = Annotated[
    str,
    typer.Option(
        metavar="MEANING",
        help="What the signature means: review, approval, responsibility or authorship.",
    ),
]
NameOption = Annotated[
    str | None,
    typer.Option(
        metavar="NAME", help="Your printed name on the signature [default: as registered]."
    ),
]
ArtifactDigestOption = Annotated[
    str | None,
    typer.Option(
        "--artifact-sha256",
        metavar="HEX",
        help="The SHA-256 of the model artifact decided on (bound into the signature).",
    ),
]

policy_app = group("Record and show the policy in force (roles, approvals, gates).")
app.add_typer(policy_app, name="policy")


def _signer(path: Path | None) -> Any:
    return None if path is None else KeyWhenUsed(path)


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """Parse repeated ``NAME=VALUE`` options, naming the one that is malformed."""
    found: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidInputError(f"{option} {item!r} is not NAME=VALUE, e.g. {option} auc=0.91")
        found[name.strip()] = value
    return found


def _numbers(values: list[str] | None, option: str) -> dict[str, float]:
    """Parse ``NAME=NUMBER`` options; a value that is not a finite number is refused."""
    found: dict[str, float] = {}
    for name, value in _pairs(values, option).items():
        try:
            number = float(value)
        except ValueError:
            raise InvalidInputError(
                f"{option} {name}={value!r}: the value is not a number, e.g. {option} {name}=0.91"
            ) from None
        if number != number or number in (float("inf"), float("-inf")):
            raise InvalidInputError(f"{option} {name}={value}: the value must be finite")
        found[name] = int(number) if number.is_integer() and "." not in value else number
    return found


def _json_values(values: list[str] | None, option: str) -> dict[str, Any]:
    """Parse ``NAME=VALUE`` options whose values are JSON when they parse, else text."""
    found: dict[str, Any] = {}
    for name, value in _pairs(values, option).items():
        try:
            found[name] = json.loads(value)
        except (ValueError, RecursionError):  # too deep to parse is text too
            found[name] = value
    return found


@contextmanager
def _warnings_said() -> Iterator[None]:
    """Print what auditml warns about (credentials removed, ...) as ``warning:`` lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for item in caught:
                notice("warning", str(item.message))


def _sources(values: list[str] | None, option: str, what: str) -> dict[str, str]:
    """Parse ``--dataset``/``--artifact``: NAME=PATH|URI, or a bare path or URI named by file."""
    from auditml.core.uri import has_scheme, scrub_uri
    from auditml.training import named_sources

    found: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or has_scheme(item):
            ((name, source),) = named_sources([item], what).items()
            value = str(source)
            if name in found:
                raise InvalidInputError(
                    f"two {option} options are both named {name!r}: give each a name, "
                    f"e.g. {option} train=... {option} test=..."
                )
        elif not name.strip():
            shown = scrub_uri(value)[0]
            raise InvalidInputError(f"{option} ={shown!r} has no name, e.g. {option} train={shown}")
        found[name.strip()] = value
    return found


def _json_sources(value: object, path: Path | None, what: str) -> dict[str, Any]:
    """Return the datasets or artifacts of a ``--from-json`` file as name to path, URI or ref."""
    from auditml.training import named_sources

    if value is None:
        return {}
    if isinstance(value, dict):
        for name, ref in value.items():
            if not isinstance(ref, dict | str):
                raise InvalidInputError(
                    f"{path}: {what}[{name!r}] must be a path, a URI or an object with a uri, "
                    f"not {type(ref).__name__}"
                )
        return value
    try:
        return dict(named_sources(value, what))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}") from None


def _json_file(path: Path | None) -> dict[str, Any]:
    """Read a JSON object from a file, or raise a sentence naming the file."""
    from auditml._internal.infile import read_bounded

    if path is None:
        return {}
    try:
        raw = read_bounded(path, "JSON file", 64 << 20)
    except FileNotFoundError:
        raise InvalidInputError(f"no JSON file at {path}") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from None
    try:
        found = loads_strict(raw)  # refuses duplicate keys and deep nesting too
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}") from None
    if not isinstance(found, dict):
        raise InvalidInputError(f"{path} must hold a JSON object, not {type(found).__name__}")
    return found


@app.command()
def train(
    model: ModelArgument,
    version: Annotated[
        str | None, typer.Option(metavar="V", help="The version [default: the next number].")
    ] = None,
    dataset: Annotated[
        list[str] | None, typer.Option(metavar="NAME=PATH|URI", help="A dataset (repeatable).")
    ] = None,
    artifact: Annotated[
        list[str] | None, typer.Option(metavar="NAME=PATH|URI", help="An output (repeatable).")
    ] = None,
    param: ParamPairs = None,
    metric: MetricPairs = None,
    tag: TagPairs = None,
    failed: Annotated[
        str | None, typer.Option(metavar="MESSAGE", help="Record the run as failed, and why.")
    ] = None,
    from_json: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="A JSON object with any of params, metrics, datasets, artifacts, tags, "
            "started_at, ended_at, base_model, parent_version.",
        ),
    ] = None,
    code: Annotated[bool, typer.Option(help="Record the git commit of the current folder.")] = True,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a training run done by a pipeline that is not Python."""
    from auditml._internal.fingerprint import artifact_ref, code_version, dataset_ref

    with errors(), _warnings_said():
        data = _json_file(from_json)
        data.setdefault("params", {}).update(_json_values(param, "--param"))
        data.setdefault("metrics", {}).update(_numbers(metric, "--metric"))
        data.setdefault("tags", {}).update(_pairs(tag, "--tag"))
        datasets = {
            **_json_sources(data.get("datasets"), from_json, "datasets"),
            **_sources(dataset, "--dataset", "datasets"),
        }
        artifacts = {
            **_json_sources(data.get("artifacts"), from_json, "artifacts"),
            **_sources(artifact, "--artifact", "artifacts"),
        }
        data["datasets"] = {
            k: v if isinstance(v, dict) else dataset_ref(v) for k, v in datasets.items()
        }
        data["artifacts"] = {
            k: v if isinstance(v, dict) else artifact_ref(v) for k, v in artifacts.items()
        }
        if failed is not None:
            data["status"] = "failed"
            data["error"] = {"type": "PipelineFailure", "message": failed}
        if code and "code" not in data:
            data["code"] = code_version(None)
        with open_log(db) as log:
            receipt = log.record_training(model, version=version, data=data, actor=who(actor))
            state = "failed run" if failed is not None else "training run"
            done(receipt, f"Recorded {state} of {model} v{receipt.version}", as_json)


@app.command()
def evaluate(
    model: ModelArgument,
    version: Annotated[str, typer.Argument(help="The version evaluated.")],
    metric: MetricPairs = None,
    dataset: Annotated[
        str | None, typer.Option(metavar="PATH|URI", help="The evaluation dataset (hashed).")
    ] = None,
    slice_: Annotated[
        list[str] | None,
        typer.Option(
            "--slice", metavar="SLICE:NAME=VALUE", help="A per-slice metric (repeatable)."
        ),
    ] = None,
    artifact: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME=PATH|URI", help="A report or plot (hashed; repeatable)."),
    ] = None,
    notes: Annotated[str | None, typer.Option(metavar="TEXT", help="Free-text notes.")] = None,
    from_json: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="A JSON object with metrics, slices, notes."),
    ] = None,
    examples: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Per-example results (CSV or JSON Lines): id, label, and both versions' "
            "score/baseline_score (AUC) or prediction/baseline_prediction (accuracy); "
            "compared with --baseline.",
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(metavar="V", help="The version this one is compared with (it replaces)."),
    ] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option(
            metavar="METRIC",
            help="A metric to compare: auc or accuracy (repeatable) [default: all the file holds].",
        ),
    ] = None,
    confidence: Annotated[
        list[str] | None,
        typer.Option(
            metavar="LEVEL", help="A confidence level of the intervals, e.g. 95% (repeatable)."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(metavar="N", help="The bootstrap's seed (recorded).", min=0)
    ] = 0,
    resamples: Annotated[
        int, typer.Option(metavar="N", help="The bootstrap's number of resamples (recorded).")
    ] = 2000,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record an evaluation of a trained version, compared with a baseline if asked."""
    with errors(), _warnings_said():
        data = _json_file(from_json)
        metrics = {**data.get("metrics", {}), **_numbers(metric, "--metric")}
        slices: dict[str, dict[str, float]] = dict(data.get("slices", {}))
        for item in slice_ or []:
            name, sep, rest = item.partition(":")
            if not sep or not name:
                raise InvalidInputError(
                    f"--slice {item!r} is not SLICE:NAME=VALUE, e.g. --slice age<30:auc=0.88"
                )
            slices.setdefault(name, {}).update(_numbers([rest], "--slice"))
        with open_log(db) as log:
            receipt = log.evaluate(
                model,
                version,
                metrics=metrics,
                dataset=dataset,
                slices=slices,
                artifacts=_sources(artifact, "--artifact", "artifacts"),
                notes=notes or data.get("notes"),
                actor=who(actor),
                examples=examples,
                baseline=baseline,
                compare=compare,
                confidence=confidence or ["95"],
                seed=seed,
                resamples=resamples,
            )
            done(receipt, f"Recorded evaluation of {model} v{version}", as_json)
            if examples is not None and not as_json:
                _print_comparisons(log, receipt.seq)


def _print_comparisons(log: Any, seq: int) -> None:
    """Print each comparison the evaluation at ``seq`` recorded, one line with its intervals."""
    from auditml.core.events import EvaluateData

    for record in log.events(start=seq, stop=seq + 1):
        for c in EvaluateData.model_validate(record.event.data).comparisons:
            intervals = ", ".join(
                f"{i.level:g}% [{i.low:+.4f}, {i.high:+.4f}]" for i in c.intervals
            )
            out.print(
                f"  {c.metric}: {c.value:.4f} vs {c.baseline_value:.4f} (v{c.baseline}), "
                f"delta {c.delta:+.4f}, {intervals}, p={c.p_value:.3g}, n={c.n}"
            )


@app.command()
def approve(
    model: ModelArgument,
    version: Annotated[str, typer.Argument(help="The version approved.")],
    reason: ReasonOption = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", metavar="ENV", help="Approve only for ENV (repeatable)."),
    ] = None,
    sign_with: SignOption = None,
    meaning: MeaningOption = "approval",
    name: NameOption = None,
    artifact: ArtifactDigestOption = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a version; its trainer may not (separation of duties)."""
    with errors(), open_log(db) as log:
        receipt = log.approve(
            model,
            version,
            reason=reason,
            environments=env or (),
            actor=who(actor),
            artifact_sha256=artifact,
            signer=_signer(sign_with),
            meaning=meaning,
            name=name,
        )
        scope = f" for {', '.join(env)}" if env else ""
        done(receipt, f"Approved {model} v{version}{scope}", as_json)
        _note_repeated_approval(log, model, version, receipt.seq)


def _note_repeated_approval(log: Any, model: str, version: str, seq: int) -> None:
    """Say so when the same id approved this version before: rules count a person once."""
    approvals = log.status(model)[model].versions[str(version)].approvals
    mine = next((a for a in approvals if a.seq == seq), None)
    if mine is None:
        return
    earlier = [a for a in approvals if a.actor == mine.actor and a.seq < seq]
    if earlier:
        notice(
            "note",
            f"{mine.actor} approved v{version} before (event {earlier[0].seq}): both are on the "
            "log, and approval rules count one person once",
        )


@app.command()
def reject(
    model: ModelArgument,
    version: Annotated[str, typer.Argument(help="The version rejected.")],
    reason: ReasonOption = None,
    sign_with: SignOption = None,
    meaning: MeaningOption = "review",
    name: NameOption = None,
    artifact: ArtifactDigestOption = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reject a version; it can never be deployed."""
    with errors(), open_log(db) as log:
        receipt = log.reject(
            model,
            version,
            reason=reason,
            actor=who(actor),
            artifact_sha256=artifact,
            signer=_signer(sign_with),
            meaning=meaning,
            name=name,
        )
        done(receipt, f"Rejected {model} v{version}", as_json)


TrafficOption = Annotated[
    str | None,
    typer.Option(
        "--traffic",
        metavar="PERCENT",
        help="Serve only this share of requests, e.g. 10%, beside the version running there "
        "(a canary).",
    ),
]


@app.command()
def deploy(
    model: ModelArgument,
    version: Annotated[str, typer.Argument(help="The version to deploy.")],
    env: EnvOption,
    traffic: TrafficOption = None,
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow", help="Serve copies of requests whose answers are not used (a shadow)."
        ),
    ] = False,
    reason: ReasonOption = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy an approved version to an environment, or start a canary or a shadow there."""
    with errors(), open_log(db) as log:
        acting = who(actor)
        receipt = log.deploy(
            model, version, env, reason=reason, actor=acting, traffic=traffic, shadow=shadow
        )
        whole = False
        if shadow:
            said = f"Started {model} v{version} as a shadow in {env}"
        elif traffic is not None and receipt is not None and _is_canary(log, model, env, version):
            share = parse_percent(traffic, where="traffic")  # "10" and "10%" read the same
            said = f"Started {model} v{version} as a canary on {share}% of {env}"
        else:
            said, whole = f"Deployed {model} v{version} to {env}", True
        done(receipt, said, as_json)
        if receipt is not None:
            _note_new_environment(log, model, env, receipt.seq)
        if whole and receipt is not None:  # an MLflow alias follows the version serving all traffic
            sync_alias(log, model, version, env, receipt.seq, acting)


def _note_new_environment(log: Any, model: str, env: str, seq: int) -> None:
    """Say so when a deploy opened an environment the model never served in (a typo?).

    Only where the policy declares no environments (a misspelt one is refused then).
    """
    import difflib

    if log.policy()[0].environments:
        return
    state = log.status(model)[model]
    before = {c.environment for c in state.splits if c.seq < seq}
    if not before or env in before:
        return
    close = difflib.get_close_matches(env, sorted(before), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    notice(
        "note",
        f"{env!r} is an environment {model} never served in before (it served in "
        f"{', '.join(sorted(before))}){hint} To refuse a misspelt environment, declare "
        "them in the policy: environments = [...]",
    )


def _is_canary(log: Any, model: str, env: str, version: str) -> bool:
    rollout = log.status(model)[model].rollouts.get(env)
    return rollout is not None and rollout.version == version


@app.command()
def promote(
    model: ModelArgument,
    version: Annotated[str, typer.Argument(help="The version in rollout to widen.")],
    env: EnvOption,
    traffic: Annotated[
        str | None,
        typer.Option(
            "--traffic",
            metavar="PERCENT",
            help="Its new share, e.g. 50% [default: 100%: it takes all traffic].",
        ),
    ] = None,
    reason: ReasonOption = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Widen a canary's (or shadow's) share of traffic; at 100% it replaces the stable version."""
    with errors(), open_log(db) as log:
        acting = who(actor)
        receipt = log.promote(model, version, env, traffic=traffic, reason=reason, actor=acting)
        share = 100 if traffic is None else parse_percent(traffic, where="traffic")
        done(receipt, f"Promoted {model} v{version} to {share}% of {env}", as_json)
        if receipt is not None and log.status(model)[model].running.get(env) == str(version):
            sync_alias(log, model, version, env, receipt.seq, acting)  # it now serves all traffic


@app.command()
def monitor(
    model: ModelArgument,
    env: EnvOption,
    window: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION", help="How far back to read, e.g. 15m, 1h [default: the policy's]."
        ),
    ] = None,
    act: Annotated[
        bool,
        typer.Option("--act", help="Roll back, as the monitor's identity, when a trigger trips."),
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare a rollout's canary with the stable version and record a monitor check.

    The triggers, the fewest requests a verdict needs and the monitor's identity
    come from the policy's [monitor.ENV]. Exit status: 0 ok or undecided, 4 tripped.
    """
    with errors(), open_log(db) as log:
        result = log.monitor(model, env, window=window, act=act)
        if as_json:
            out.print_json(data=result.as_dict())
        else:
            data = result.data
            counts = data["counts"]
            out.print(
                f"Monitor check of {model} v{data['canary']} ({data['mode']}) against "
                f"v{data['stable']} in {env}: {result.verdict} (event {result.check.seq})"
            )
            out.print(
                f"  window {utc(data['window']['since'])} to {utc(data['window']['until'])} UTC; "
                f"requests: canary {counts['canary']}, stable {counts['stable']} "
                f"(at least {data['min_requests']} needed)"
            )
            shown = table("trigger", "value", "result", overflow="fold")
            for t in data["triggers"]:
                value = "n/a" if t.get("value") is None else f"{t['value']:.4g}"
                verdict = {True: "TRIPPED", False: "ok", None: "undecided"}[t.get("tripped")]
                if t.get("tripped") is None:
                    why = undecided_because(
                        t["statistic"],
                        counts,
                        data["min_requests"],
                        shadow=data["mode"] == "shadow",
                    )
                    verdict = f"undecided: {why}" if why else verdict
                shown.add_row(t["trigger"], value, verdict)
            out.print(shown)
            if result.rollback is not None:
                out.print(
                    f"Rolled {env} back to {model} v{data['stable']} (event "
                    f"{result.rollback.seq}, caused by check {result.check.seq})"
                )
            elif result.verdict == "tripped":
                out.print("Not rolled back: run with --act to let the monitor roll back")
        if result.rollback is not None:  # MLflow-based serving follows the automatic rollback
            rule = log.policy()[0].monitor.get(env)
            acting = rule.actor if rule is not None else None
            sync_alias(log, model, str(result.data["stable"]), env, result.rollback.seq, acting)
    if result.verdict == "tripped":
        raise typer.Exit(4)


@app.command()
def rollback(
    model: ModelArgument,
    env: EnvOption,
    to: Annotated[
        str | None,
        typer.Option(metavar="V", help="The version to go back to [default: the previous one]."),
    ] = None,
    reason: ReasonOption = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Roll an environment back to a version that ran there before."""
    with errors(), open_log(db) as log:
        acting = who(actor)
        receipt = log.rollback(model, env, to=to, reason=reason, actor=acting)
        done(receipt, f"Rolled {env} back to {model} v{receipt.version}", as_json)
        sync_alias(log, model, str(receipt.version), env, receipt.seq, acting)


@app.command()
def retire(
    model: ModelArgument,
    version: Annotated[str, typer.Argument(help="The version to retire.")],
    reason: ReasonOption = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Retire a version for good."""
    with errors(), open_log(db) as log:
        receipt = log.retire(model, version, reason=reason, actor=who(actor))
        done(receipt, f"Retired {model} v{version}", as_json)


incident_app = group("Open, close and list incidents (EU AI Act Art. 73 deadlines included).")
app.add_typer(incident_app, name="incident")


@incident_app.command("open")
def incident_open(
    model: ModelArgument,
    version: Annotated[str, typer.Argument(help="The version involved.")],
    summary: Annotated[str, typer.Option(metavar="TEXT", help="What happened.")],
    severity: Annotated[
        str,
        typer.Option(
            metavar="LEVEL",
            help="low, medium, high or serious (a serious incident under EU AI Act Art. 3(49)).",
        ),
    ] = "medium",
    impact: Annotated[
        str | None,
        typer.Option(
            metavar="KIND",
            help="death, critical-infrastructure, widespread-infringement, health, "
            "fundamental-rights or property-or-environment.",
        ),
    ] = None,
    aware_at: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="When you became aware of it [default: now]."),
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", "-e", metavar="ENV", help="Where it happened.")
    ] = None,
    reference: Annotated[
        str | None, typer.Option(metavar="REF", help="A ticket or report reference.")
    ] = None,
    incident_id: Annotated[
        str | None, typer.Option("--id", metavar="ID", help="Its id [default: INC-n].")
    ] = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open an incident against a version."""
    with errors(), open_log(db) as log:
        found = log.open_incident(
            model,
            version,
            summary,
            severity=severity,
            impact=impact,
            aware_at=aware_at,
            environment=env,
            reference=reference,
            id=incident_id,
            actor=who(actor),
        )
        if as_json:
            out.print_json(data=found.as_dict())
            return
        out.print(
            f"Opened {found.severity} incident {found.id} on {model} v{version} (event {found.seq})"
        )
        if found.due is not None:
            out.print(f"report it to the authority by {found.due[0][:16]} UTC ({found.due[1]})")


@incident_app.command("close")
def incident_close(
    incident_id: Annotated[str, typer.Argument(metavar="ID", help="The incident's id.")],
    resolution: Annotated[
        str,
        typer.Option(
            "--resolution",
            "--reason",
            metavar="TEXT",
            help="How it was resolved (--reason, as other decisions say, works too).",
        ),
    ],
    reported_at: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="When it was reported to the authority, if it was."),
    ] = None,
    reference: Annotated[
        str | None, typer.Option(metavar="REF", help="A ticket or report reference.")
    ] = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Close an open incident."""
    with errors(), open_log(db) as log:
        receipt = log.close_incident(
            incident_id,
            resolution,
            reported_at=reported_at,
            reference=reference,
            actor=who(actor),
        )
        done(receipt, f"Closed incident {incident_id}", as_json)


@incident_app.command("list")
def incident_list(
    model: OnlyModelArgument = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List incidents with their Art. 73 reporting deadlines."""
    with errors(), open_log(db) as log:
        found = log.incidents(model)
        if as_json:
            out.print_json(data=[i.as_dict() for i in found])
            return
        if not found:
            out.print("No incidents recorded.")
            return
        # When someone became aware sets the report deadline: shown where it is not the opening.
        aware = any(utc(i.aware_at) != utc(i.time) for i in found)
        shown = table(
            "id",
            "opened (UTC)",
            *(["aware (UTC)"] if aware else []),
            "model",
            "version",
            "env",
            "severity",
            "state",
            "report due (UTC)",
            "summary",
        )
        for i in found:
            due = "-" if i.due is None else f"{i.due[0][:16].replace('T', ' ')} {i.due[1]}"
            shown.add_row(
                i.id,
                utc(i.time),
                *([utc(i.aware_at)] if aware else []),
                i.model,
                i.version,
                i.environment or "-",
                i.severity,
                "open" if i.is_open else f"closed (event {i.closed_seq})",
                due,
                i.summary,
            )
        out.print(shown)


@app.command()
def status(
    model: OnlyModelArgument = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show each version's state and what runs in each environment now."""
    with errors(), open_log(db) as log:
        states = log.status(model)
        if as_json:
            found: dict[str, list[dict[str, Any]]] = {}
            for v in log.registry_violations(model):
                found.setdefault(v.model, []).append(v.as_dict())
            out.print_json(
                data=[
                    {**s.as_dict(), "registry_violations": found.get(name, [])}
                    for name, s in states.items()
                ]
            )
            return
        if not states:
            err.print("no models on the log yet")
            return
        label = actor_names(log)
        for name, state in sorted(states.items()):
            here = state.running_imported()
            running = ", ".join(
                tagged(f"{e}: {_split_text(state.split(e), state.shadows(e))}", e in here)
                for e in sorted(state.running)
            )
            out.print(Styled((name, "bold"), f"  now running: {running or 'nowhere'}"))
            columns = ("version", "state", "trained", "by", "approved by", "runs in")
            shown = table(*columns, overflow="fold")
            for vs in state.versions.values():
                ended = {"retired": vs.retired, "rejected": vs.rejected}.get(vs.state)
                shown.add_row(
                    vs.version,
                    # Who ended a version shows beside its state, as approvers show beside theirs.
                    vs.state if ended is None else f"{vs.state} by {label(ended.actor)}",
                    tagged(utc(vs.trained_at or ""), vs.trained_imported),
                    ", ".join(label(t) for t in vs.trainers),
                    ", ".join(
                        dict.fromkeys(tagged(label(a.actor), a.imported) for a in vs.approvals)
                    ),
                    ", ".join(tagged(e, e in here) for e in vs.running_in),
                )
            out.print(shown)
        if any(_shows_imported(state) for state in states.values()):
            note_imported("(imported)")
        _show_violations(log, model)


def _show_violations(log: Any, model: str | None) -> None:
    """List the changes made in MLflow that policy would have refused, if the log records any."""
    found = log.registry_violations(model)
    if not found:
        return
    out.print(
        Styled(
            ("violations", "bold red"),
            f": {len(found)} change(s) made in MLflow that policy would have refused",
        )
    )
    shown = table("seq", "time (UTC)", "model", "version", "rule", "what", overflow="fold")
    for v in found:
        shown.add_row(str(v.seq), utc(v.time), v.model, v.version or "", v.rule, v.message)
    out.print(shown)


def _split_text(split: dict[str, int], shadows: list[str]) -> str:
    """Return a split as ``v1 90% + v2 10%`` (one version alone: ``v1``), with shadows."""
    if len(split) == 1:
        text = f"v{next(iter(split))}"
    else:
        text = " + ".join(f"v{v} {p}%" for v, p in split.items())
    return text + "".join(f" + v{v} shadow" for v in shadows)


def _shows_imported(state: ModelState) -> bool:
    """Return whether a model's status line or table shows anything imported."""
    return bool(state.running_imported()) or any(
        vs.trained_imported or any(a.imported for a in vs.approvals)
        for vs in state.versions.values()
    )


@app.command()
def history(
    model: ModelArgument,
    env: Annotated[
        str | None, typer.Option("--env", "-e", metavar="ENV", help="Only this environment.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the model's deployment timeline: every deploy, rollout step and rollback, oldest first.

    Each row shows the split of traffic in force after it (v1 90% + v2 10%).
    """
    with errors(), open_log(db) as log:
        log.history(model, env)  # refuses an unknown model or environment
        changes = log.splits(model, env)
        if as_json:
            out.print_json(data=[asdict(c) for c in changes])
            return
        if not changes:
            err.print(f"{model} was never deployed" + (f" to {env}" if env else ""))
            return
        imported = any(c.imported for c in changes)  # a column only when some move was imported
        label = actor_names(log)
        columns = (
            "seq",
            "time (UTC)",
            "env",
            "action",
            "version",
            "replaced",
            "split after",
            "by",
            "reason",
        )
        shown = table(*(*columns, "imported") if imported else columns, overflow="fold")
        for c in changes:
            reason = c.reason or ""
            if c.cause is not None and not re.search(rf"\bcheck {c.cause}\b", reason):
                reason = f"{reason} (check {c.cause})".strip()  # unless the reason names it
            row = [
                str(c.seq),
                utc(c.time),
                c.environment,
                c.action.removeprefix("model."),
                c.version,
                c.replaces or "",
                _split_text(c.split, c.shadows),
                label(c.actor),
                reason,
            ]
            shown.add_row(*row, *(("imported" if c.imported else "",) if imported else ()))
        out.print(shown)
        if imported:
            note_imported("imported")


@policy_app.command("apply")
def policy_apply(
    file: Annotated[Path, typer.Argument(help="The policy file, e.g. auditml.toml.")] = Path(
        "auditml.toml"
    ),
    reason: ReasonOption = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check the file and show what it would change against the policy in force; "
            "record nothing.",
        ),
    ] = False,
    allow_stranded: Annotated[
        bool,
        typer.Option(
            "--allow-stranded",
            help="Record it even though its environments leave out one where a version runs "
            "(no decision could name it then); the policy event lists what it strands.",
        ),
    ] = False,
) -> None:
    """Record a policy file on the log; it is in force from that event on.

    The file replaces the whole policy in force: every setting it leaves out
    takes its default. What it adds, removes and changes is printed; --dry-run
    prints only that, and records nothing.
    """
    with errors(), open_log(db) as log:
        review = log.review_policy(file, actor=who(actor), allow_stranded=allow_stranded)
        for warning in review.warnings:
            notice("warning", warning)  # with --json, a JSON line
        for env, runs in review.stranded.items():
            notice(
                "warning",
                f"the environments list leaves out {env!r}, where {', '.join(runs)} "
                f"runs: no decision can name {env!r} while this policy is in force",
            )
        if dry_run and review.in_force_seq is not None and _same_as_in_force(log, file):
            raise InvalidInputError(  # as the apply itself would be refused
                f"this policy is already in force (recorded at event {review.in_force_seq}): "
                "applying it would record nothing, and is refused; nothing was recorded"
            )
        if dry_run:
            if as_json:
                out.print_json(data={"dry_run": True, "recorded": False, **review.as_dict()})
                return
            _print_changes(review)
            out.print(f"Dry run: nothing was recorded; apply {file} without --dry-run to record it")
            return
        receipt = log.apply_policy(
            file, reason=reason, actor=who(actor), allow_stranded=allow_stranded
        )
        if as_json:
            out.print_json(
                data={**asdict(receipt), "dry_run": False, "recorded": True, **review.as_dict()}
            )
            return
        out.print(f"Policy from {file} is in force (event {receipt.seq})")
        _print_changes(review)


_CHANGE_ORDER = {"removed": 0, "changed": 1, "added": 2}


def _same_as_in_force(log: Any, file: Path) -> bool:
    """Return whether the policy in ``file`` is the one in force (an apply would be refused)."""
    from auditml._internal.policyfile import load_policy

    return bool(load_policy(file)[0] == log.policy()[0])


def _print_changes(review: PolicyReview) -> None:
    """Print what a policy changes against the one in force, removals first."""
    against = (
        f"the policy in force (event {review.in_force_seq})"
        if review.in_force_seq is not None
        else "the default policy (none recorded)"
    )
    if not review.changes:
        out.print(f"No setting changes from {against}.")
        return
    out.print(f"Changes from {against}:")
    shown = table("change", "setting", "before", "after", overflow="fold")
    for change in sorted(review.changes, key=lambda c: _CHANGE_ORDER[c.kind]):
        before = "-" if change.kind == "added" else _policy_value(change.old)
        after = "-" if change.kind == "removed" else _policy_value(change.new)
        shown.add_row(change.kind, change.setting, before, after)
    out.print(shown)


@policy_app.command("show")
def policy_show(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show the policy in force and the event that recorded it."""
    with errors(), open_log(db) as log:
        policy, seq = log.policy()
        where = f"recorded at event {seq}" if seq is not None else "the default: none recorded"
        imported = [r.seq for r in log.events(action="policy.update") if is_imported(r.event.data)]
        defaults = DEFAULT_POLICY.as_data()
        data = policy.as_data()
        if as_json:
            out.print_json(
                data={
                    "seq": seq,
                    "policy": data,
                    "defaults": sorted(k for k, v in data.items() if v == defaults.get(k)),
                    "imported": imported,
                }
            )
            return
        out.print(f"Policy in force ({where}):")
        shown = table("setting", "value", "same as default", overflow="fold")
        for key, value in data.items():
            same = "yes" if value == defaults.get(key) else "no"
            shown.add_row(key, _policy_value(value), same)
        out.print(shown)
        if imported:
            events = ", ".join(str(i) for i in imported)
            out.print(
                f"Imported policy updates (events {events}) are history only and never in "
                f"force: {IMPORTED_NOTE}"
            )


def _policy_value(value: Any) -> str:
    """Render one policy setting for people: tables as ``key: value`` lines, lists joined.

    A value left unset (None) reads ``not set``, never Python's ``None``.
    """
    if value is None:
        return "not set"
    if isinstance(value, dict):
        if not value:
            return "(none)"
        return "\n".join(f"{k}: {_policy_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_policy_value(v) for v in value) if value else "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@app.command()
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Where the demo writes its log and files.")
    ] = Path("auditml-demo"),
) -> None:
    """Tell a model's life in seconds: train, evaluate, approve, deploy, roll back, verify."""
    from auditml._internal.demo import run_demo

    with errors():
        run_demo(out_dir, out.console)
