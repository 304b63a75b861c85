"""Views of runtime records over an AuditLog: trace a request, prove a record, stats, checks.

Runtime records (docs/format.md section 6) say what each deployed version did.
This module reads them back against the lifecycle the log tells:

- :func:`trace` finds a request's record(s), checks each one's record proof
  against the log's latest checkpoint (or its current root) and tells its
  story: the version that served it, its training and data, who approved it
  under which policy, when it was deployed there, and the incidents open then;
- :func:`prove_record` writes the record proof of section 6, for an auditor to
  check offline with nothing but the log's signed checkpoint;
- :func:`runtime_stats` gives requests, errors, latency quantiles and the
  distribution of outputs per model, version and environment;
- :func:`runtime_check` finds records a version should not have produced (it
  was not deployed there at that moment) and deployed versions that went quiet.

Every figure and story stands on verified bytes only. The columns copied out
of a record (request id, time, model, version, environment, latency, error)
are indexes, never read as facts: stats and checks read the records of the
``runtime.segment`` events on the log, segment by segment, and count a
segment's records only once they hash to its root; trace and proofs find a
request through its column and then hold the record's bytes to it and prove
them. Records the log does not commit to (beyond its head, or claiming an
event that is no segment) are never counted.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from auditml.core.canonical import loads_strict
from auditml.core.records import verify_record_proof
from auditml.core.rollout import sorted_quantile
from auditml.core.signing import VerifierKey, open_checkpoint
from auditml.core.state import ModelState, Move, SplitChange
from auditml.errors import InvalidInputError, VerificationError
from auditml.evidence import checked_record, segments_of, verified_records
from auditml.log import AuditLog

__all__ = [
    "Finding",
    "RecordStory",
    "RuntimeStats",
    "Trace",
    "prove_record",
    "runtime_check",
    "runtime_stats",
    "trace",
]

#: How many request ids a finding lists (its count covers them all).
SAMPLE_IDS = 20
#: How many distinct labels of one output key stats count before folding the rest into "…".
MAX_LABELS = 50
#: A running version is "silent" when quiet for more than this many times its usual gap…
QUIET_FACTOR = 10.0
#: …and for at least this long.
MIN_QUIET = timedelta(hours=1)

_QUANTILES = (0.5, 0.95, 0.99)
_SCORE_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def _when(text: str) -> datetime:
    """Return an RFC 3339 UTC time as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _stamp(value: str | datetime | date | None) -> str | None:
    """Return a filter bound as the records' time layout (RFC 3339 UTC, microseconds, Z)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInputError(
                f"{value!r} is not a date or time; give e.g. 2026-12-01 or 2026-12-01T10:00:00Z"
            ) from None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInputError(
            f"{value.isoformat()} is out of range; give a time between years 1 and 9999 UTC"
        ) from None
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _bounds(
    since: str | datetime | date | None, until: str | datetime | date | None
) -> tuple[str | None, str | None]:
    """Return ``since`` and ``until`` as record times; refuse a window ending before it starts."""
    low, high = _stamp(since), _stamp(until)
    if low is not None and high is not None and high < low:
        raise InvalidInputError(
            f"the window ends ({high}) before it starts ({low}); give --until after --since"
        )
    return low, high


# --------------------------------------------------------------------------- proofs


def _proof_size(log: AuditLog, seg: int, size: int | None) -> int:
    """Return the tree size a record proof of segment ``seg`` is made at."""
    if size is not None:
        return size
    latest = log.latest_checkpoint()
    if latest is not None and latest.size > seg:
        return latest.size
    return log.head().size


def prove_record(
    log: AuditLog, request_id: str, *, size: int | None = None, which: int = -1
) -> dict[str, Any]:
    """Return the docs/format.md section 6 record proof of request ``request_id``.

    The segment event is proven in the tree of ``size`` events (default: the
    log's latest signed checkpoint when it covers the segment, else the log's
    current size), so the proof checks against the checkpoint of that size.
    A request recorded more than once is proven by its latest record (``which``
    picks another, oldest first). The proof is checked against the log's root
    at that size before it is returned: a record the log does not commit to
    raises VerificationError, never a proof that fails later.
    """
    if isinstance(size, bool) or not (size is None or isinstance(size, int)):
        raise InvalidInputError(f"size must be a whole number of events, not {size!r}")
    if isinstance(which, bool) or not isinstance(which, int):
        raise InvalidInputError(f"which must be a whole number, not {which!r}")
    rows = log._stored_records(request_id)
    try:
        seg, body, _ = rows[which]
    except IndexError:
        raise InvalidInputError(
            f"request {request_id!r} has {len(rows)} record(s); there is no record {which}"
        ) from None
    at = _proof_size(log, seg, size)
    proof = log._prove_stored(seg, body, at)
    verify_record_proof(proof, log.root(at), origin=log.origin, tree_size=at)
    return proof


# --------------------------------------------------------------------------- trace


@dataclass(frozen=True)
class RecordStory:
    """One record of a request, its proof check, and what the log says about what served it."""

    record: dict[str, Any]
    segment_seq: int
    index: int
    proof_ok: bool
    proof_error: str | None
    proven_at_size: int
    proven_against: str  # "checkpoint" (the latest signed one) or "root" (the current root)
    trained_seq: int | None
    trained_at: str | None
    trained_by: list[str]
    datasets: dict[str, dict[str, Any]]
    approvals: list[dict[str, Any]]
    deployed: dict[str, Any] | None
    running_then: str | None
    deployed_then: bool
    incidents_open: list[dict[str, Any]]

    @property
    def version(self) -> str:
        """Return the version that served the request."""
        return str(self.record["version"])


@dataclass(frozen=True)
class Trace:
    """A request's runtime record(s), each with its checked proof and its story."""

    request_id: str
    origin: str
    records: list[RecordStory] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the trace as plain JSON values."""
        return asdict(self)


def _move_dict(move: Move | SplitChange) -> dict[str, Any]:
    return {
        "seq": move.seq,
        "time": move.time,
        "action": move.action,
        "environment": move.environment,
        "version": move.version,
        "replaces": move.replaces,
        "actor": move.actor,
        "reason": move.reason,
        "imported": move.imported,
    }


def _policy_seq_before(log: AuditLog, seq: int) -> int | None:
    """Return the seq of the policy in force before event ``seq`` (None: the default policy)."""
    found = None
    for rec in log.events(action="policy.update", stop=seq):
        if not rec.event.data.get("imported"):
            found = rec.seq
    return found


def _running_at(timeline: list[Move], env: str, when: str) -> Move | None:
    """Return the move in effect in ``env`` at time ``when`` (the last one at or before it)."""
    found = None
    for move in timeline:
        if move.environment == env and move.time <= when:
            found = move
    return found


def _signed_root(log: AuditLog, note: str) -> str:
    """Return the root a checkpoint's signed note commits to, opened with the log's own key.

    The key is the one the log's first event binds (else the store's), and the
    root is read from the signed text, never from the checkpoint's root column.
    """
    (first,) = list(log.events(stop=1))
    bound = first.event.data.get("vkey")
    key = VerifierKey.parse(bound) if isinstance(bound, str) else log.verifier_key()
    return open_checkpoint(note, key, origin=log.origin).root_hex


def _story(
    log: AuditLog, state: ModelState | None, seg: int, body: bytes, size: int
) -> RecordStory:
    record = loads_strict(body)
    index = record.get("i")
    version, env, when = str(record.get("version")), str(record.get("env")), str(record.get("time"))
    checkpoint = log.latest_checkpoint()
    against = "checkpoint" if checkpoint is not None and checkpoint.size == size else "root"
    error = None
    try:
        trusted = (
            _signed_root(log, checkpoint.note)
            if against == "checkpoint" and checkpoint
            else log.root(size)
        )
        proof = log._prove_stored(seg, body, size)
        verify_record_proof(proof, trusted, origin=log.origin, tree_size=size)
        checked_record(seg, index if isinstance(index, int) else -1, body)
    except (VerificationError, InvalidInputError) as exc:
        error = str(exc)
        state = None  # the log does not commit to this record: it has no story to tell
    vs = state.versions.get(version) if state is not None else None
    datasets: dict[str, dict[str, Any]] = {}
    if vs is not None and vs.trained_seq is not None:
        for rec in log.events(start=vs.trained_seq, stop=vs.trained_seq + 1):
            found = rec.event.data.get("datasets")
            if isinstance(found, dict):
                datasets = {str(k): dict(v) for k, v in found.items() if isinstance(v, dict)}
    approvals = [
        {
            "seq": a.seq,
            "time": a.time,
            "actor": a.actor,
            "environments": list(a.environments),
            "role": a.role,
            "imported": a.imported,
            "policy_seq": _policy_seq_before(log, a.seq),
        }
        for a in (vs.approvals if vs is not None else [])
        if a.time <= when
    ]
    timeline = state.timeline if state is not None else []
    deployed = None
    # The split changes hold every deploy and rollback, and each rollout's start and steps.
    for change in state.splits if state is not None else []:
        if change.environment == env and change.version == version and change.time <= when:
            deployed = {**_move_dict(change), "split": change.split, "shadows": change.shadows}
    running = _running_at(timeline, env, when)
    retired = vs is not None and vs.retired is not None and vs.retired.time <= when
    split, shadows = state.serving_at(env, when) if state is not None else ({}, [])
    incidents = [
        inc.as_dict()
        for inc in (log.incidents(str(record.get("model"))) if vs is not None else [])
        if inc.time <= when and (inc.closed_at is None or inc.closed_at > when)
    ]
    return RecordStory(
        record=record,
        segment_seq=seg,
        index=index if isinstance(index, int) and not isinstance(index, bool) else -1,
        proof_ok=error is None,
        proof_error=error,
        proven_at_size=size,
        proven_against=against,
        trained_seq=vs.trained_seq if vs is not None else None,
        trained_at=vs.trained_at if vs is not None else None,
        trained_by=list(vs.trainers) if vs is not None else [],
        datasets=datasets,
        approvals=approvals,
        deployed=deployed,
        running_then=running.version if running is not None else None,
        deployed_then=(version in split or version in shadows) and not retired,
        incidents_open=incidents,
    )


def trace(log: AuditLog, request_id: str) -> Trace:
    """Return the record(s) of ``request_id``, each with its proof checked and its story.

    Each record's proof is built and checked as an auditor would, against the
    log's latest signed checkpoint when it covers the record's segment, else
    against the log's current root; a failure is reported in the story, not
    raised, and a record whose proof fails gets no story (nothing the log says
    is told of a record the log does not commit to). A stored row whose bytes
    are not the record of ``request_id`` raises VerificationError.
    """
    rows = log._stored_records(request_id)
    states: dict[str, ModelState | None] = {}
    stories = []
    for seg, body, record in rows:
        model = str(record.get("model"))
        if model not in states:
            try:
                states[model] = log.status(model).get(model)
            except InvalidInputError:  # records of a model that is not on the log
                states[model] = None
        stories.append(_story(log, states[model], seg, body, _proof_size(log, seg, None)))
    return Trace(request_id=request_id, origin=log.origin, records=stories)


# --------------------------------------------------------------------------- stats


@dataclass
class _Acc:
    requests: int = 0
    errors: int = 0
    first: str | None = None
    last: str | None = None
    latency: array[float] = field(default_factory=lambda: array("d"))
    labels: dict[str, Counter[str]] = field(default_factory=dict)
    scores: dict[str, array[float]] = field(default_factory=dict)

    def add(self, time: str, latency: float, error: object, output: Mapping[str, Any]) -> None:
        self.requests += 1
        if error is not None:
            self.errors += 1
        self.first = time if self.first is None or time < self.first else self.first
        self.last = time if self.last is None or time > self.last else self.last
        self.latency.append(float(latency))
        for key, value in output.items():
            if isinstance(value, str | bool):
                label = str(value).lower() if isinstance(value, bool) else value
                counts = self.labels.setdefault(key, Counter())
                if label in counts or len(counts) < MAX_LABELS:
                    counts[label] += 1
                else:
                    counts["…"] += 1
            elif isinstance(value, int | float) and math.isfinite(value):
                self.scores.setdefault(key, array("d")).append(float(value))


@dataclass(frozen=True)
class RuntimeStats:
    """What one version did in one environment: requests, errors, latency and outputs."""

    model: str
    version: str
    env: str
    requests: int
    errors: int
    error_rate: float
    first_time: str | None
    last_time: str | None
    latency_ms: dict[str, float | None]
    labels: dict[str, dict[str, int]]
    scores: dict[str, dict[str, float | None]]
    #: The records were made by a version in shadow (answers not used), kept apart from served ones.
    shadow: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as plain JSON values."""
        return asdict(self)


def _mean(values: array[float]) -> float:
    """Return the mean of finite values; where their sum overflows, the sum of each over n."""
    n = len(values)
    try:
        total = math.fsum(values)
    except OverflowError:  # scores near ±1e308: the sum leaves the floats, the mean does not
        return math.fsum(v / n for v in values)
    return total / n


def _finish(key: tuple[str, str, str, bool], acc: _Acc) -> RuntimeStats:
    latency = array("d", sorted(acc.latency))
    scores = {}
    for name, values in sorted(acc.scores.items()):
        ordered = array("d", sorted(values))
        figures: dict[str, float | None] = {
            f"p{round(q * 100):02d}": sorted_quantile(ordered, q) for q in _SCORE_QUANTILES
        }
        figures["mean"] = _mean(ordered)
        scores[name] = figures
    return RuntimeStats(
        model=key[0],
        version=key[1],
        env=key[2],
        requests=acc.requests,
        errors=acc.errors,
        error_rate=acc.errors / acc.requests if acc.requests else 0.0,
        first_time=acc.first,
        last_time=acc.last,
        latency_ms={f"p{round(q * 100)}": sorted_quantile(latency, q) for q in _QUANTILES},
        labels={name: dict(counts.most_common()) for name, counts in sorted(acc.labels.items())},
        scores=scores,
        shadow=key[3],
    )


def _known(log: AuditLog, model: str | None, env: str | None) -> None:
    """Refuse a model or environment the log says nothing of, naming the ones it knows."""
    if model is None and env is None:
        return
    for name, what in ((model, "model"), (env, "environment")):
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise InvalidInputError(f"give the name of a {what}, not {name!r}")
    segments = segments_of(log._ledger, model=model)
    if model is not None and not segments:
        log.status(model)  # raises, naming the models the log knows, when it knows none such
    if env is None:
        return
    try:
        states = log.status(model)
    except InvalidInputError:  # a model with records but no lifecycle on the log
        states = {}
    envs = {str(seg.env) for seg in segments} | {
        move.environment for state in states.values() for move in state.timeline
    }
    if env not in envs:
        of = f" of {model!r}" if model is not None else ""
        known = ", ".join(sorted(envs)[:10]) or "none yet"
        raise InvalidInputError(
            f"no runtime records or deployments{of} in environment {env!r} on the log "
            f"(its environments: {known})"
        )


def runtime_stats(
    log: AuditLog,
    model: str | None = None,
    env: str | None = None,
    since: str | datetime | date | None = None,
    until: str | datetime | date | None = None,
) -> list[RuntimeStats]:
    """Return per (model, version, env): requests, errors, latency p50/p95/p99 and outputs.

    Records a version made while it ran in shadow there (serving copies of
    requests, its answers not used) are counted apart, with ``shadow`` true.

    Outputs are summarized per key: label counts for text (and true/false)
    values, quantiles p00…p100 and the mean for numbers. ``since`` is inclusive
    and ``until`` exclusive, on the records' own times; plain dates mean midnight UTC.
    """
    low, high = _bounds(since, until)
    _known(log, model, env)
    # A version in shadow serves copies of requests: its records are counted apart.
    shadowed = {
        name: state
        for name, state in log.status().items()
        if any(change.shadows for change in state.splits)
    }
    groups: dict[tuple[str, str, str, bool], _Acc] = {}
    for _, record in verified_records(log._ledger, model=model, env=env, since=low, until=high):
        state = shadowed.get(record["model"])
        shadow = (
            state is not None
            and record["version"] in state.serving_at(record["env"], record["time"])[1]
        )
        key = (record["model"], record["version"], record["env"], shadow)
        acc = groups.get(key)
        if acc is None:
            acc = groups[key] = _Acc()
        acc.add(record["time"], record["latency_ms"], record["error"], record["output"])
    return [_finish(key, groups[key]) for key in sorted(groups)]


# --------------------------------------------------------------------------- check


@dataclass
class Finding:
    """Records a version should not have produced, or a deployed version gone quiet.

    ``kind`` is one of ``unknown-version``, ``never-deployed``, ``before-deploy``,
    ``rolled-back``, ``replaced``, ``retired``, ``silent`` or ``clock-skew`` (records
    stamped after the segment that commits them was appended); ``message`` says it
    in one sentence; ``count``, ``first_time``, ``last_time`` and
    ``request_ids`` (the first few) name the records behind it.
    """

    kind: str
    model: str
    version: str
    env: str
    message: str
    count: int = 0
    first_time: str | None = None
    last_time: str | None = None
    request_ids: list[str] = field(default_factory=list)
    cause_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the finding as plain JSON values."""
        return asdict(self)

    def _add(self, request_id: str, time: str) -> None:
        self.count += 1
        if len(self.request_ids) < SAMPLE_IDS:
            self.request_ids.append(request_id)
        self.first_time = (
            time if self.first_time is None or time < self.first_time else self.first_time
        )
        self.last_time = time if self.last_time is None or time > self.last_time else self.last_time


class _Rules:
    """Says, for a record's model, version, env and time, why it should not exist (or None)."""

    def __init__(self, states: Mapping[str, ModelState]) -> None:
        self.states = states

    def judge(
        self, model: str, version: str, env: str, when: str
    ) -> tuple[str, str, int | None] | None:
        state = self.states.get(model)
        vs = state.versions.get(version) if state is not None else None
        if state is None or vs is None:
            return ("unknown-version", f"version {version} of {model} is not on the log", None)
        moves = [m for m in state.timeline if m.environment == env]
        mine = [m for m in moves if m.version == version]
        if vs.retired is not None and vs.retired.time <= when:
            return (
                "retired",
                f"{model} {version} served in {env} after it was retired at {vs.retired.time}",
                vs.retired.seq,
            )
        if state.splits and any(c.environment == env and c.rollout for c in state.splits):
            split, shadows = state.serving_at(env, when)
            if version in split or version in shadows:
                return None  # a canary or a shadow of a rollout in force then
        current = None
        for move in moves:
            if move.time <= when:
                current = move
        if current is not None and current.version == version:
            return None
        if not mine:
            if vs.rejected is not None:
                why = "was rejected"
            elif not vs.approvals:
                why = "was never approved"
            else:
                why = f"was approved and never deployed to {env}"
            return ("never-deployed", f"{model} {version} served in {env}, but it {why}", None)
        if when < mine[0].time:
            first = mine[0]
            return (
                "before-deploy",
                f"{model} {version} served in {env} before it was deployed there at "
                f"{first.time} (seq {first.seq})",
                first.seq,
            )
        assert current is not None  # a move of this version precedes ``when``
        if current.action == "model.rollback":
            kind, how = "rolled-back", f"{env} was rolled back to {current.version}"
        else:
            kind, how = "replaced", f"{current.version} replaced it there"
        return (
            kind,
            f"{model} {version} served in {env} after {how} at {current.time} (seq {current.seq})",
            current.seq,
        )


def runtime_check(
    log: AuditLog,
    *,
    now: datetime | None = None,
    quiet_factor: float = QUIET_FACTOR,
    min_quiet: timedelta = MIN_QUIET,
) -> list[Finding]:
    """Return the findings of a pass over every runtime record, each with its records.

    A record is a finding when its version was not deployed in its
    environment at its time: an unknown version, one never deployed there
    (never approved, rejected, or approved but not deployed there), one stamped
    before its first deployment there, one after it was rolled back or replaced
    there, or one after it was retired. A record is judged at its own time, or
    at its segment's (when it was appended) if that is earlier: a record
    stamped later than that is also a ``clock-skew`` finding.

    A version running in an environment now is ``silent`` when its model records
    in that environment at all, and its last record there since its deployment
    (or the deployment itself, when it has none) is older than ``now`` by more
    than ``quiet_factor`` times its usual gap between records (of the version
    since deployment, else of the model in that environment), and by at least
    ``min_quiet``. ``now`` defaults to the current time.
    """
    states = log.status()
    rules = _Rules(states)
    found: dict[tuple[str, str, str, str, int | None, str], Finding] = {}
    key: tuple[str, str, str, str, int | None, str]
    # (model, env) -> count, first, last of all its records; and of the running version since deploy
    stream: dict[tuple[str, str], list[Any]] = {}
    running: dict[tuple[str, str], list[Any]] = {}
    deploys = {
        (model, env): next(
            m for m in reversed(state.timeline) if m.environment == env and m.version == version
        )
        for model, state in states.items()
        for env, version in state.running.items()
    }
    for committed, record in verified_records(log._ledger):
        request_id, stamped = record["request_id"], record["time"]
        model, version, env = record["model"], record["version"], record["env"]
        # A record cannot be made after the segment that commits it was appended: a later
        # stamp is a clock running ahead, and the segment's time is the latest it can be.
        when = min(stamped, committed)
        if stamped > committed:
            key = ("clock-skew", model, version, env, None, "")
            finding = found.get(key)
            if finding is None:
                finding = found[key] = Finding(
                    "clock-skew",
                    model,
                    version,
                    env,
                    f"{model} {version} in {env}: records stamped after the segment that commits "
                    "them was appended (the server's clock runs ahead); they are judged at "
                    "their segment's time",
                )
            finding._add(request_id, stamped)
        per = stream.setdefault((model, env), [0, when, when])
        per[0] += 1
        per[1], per[2] = min(per[1], when), max(per[2], when)
        move = deploys.get((model, env))
        if move is not None and move.version == version and when >= move.time:
            mine = running.setdefault((model, env), [0, when, when])
            mine[0] += 1
            mine[1], mine[2] = min(mine[1], when), max(mine[2], when)
        verdict = rules.judge(model, version, env, when)
        if verdict is None:
            continue
        kind, message, cause = verdict
        key = (kind, model, version, env, cause, message)
        finding = found.get(key)
        if finding is None:
            finding = found[key] = Finding(kind, model, version, env, message, cause_seq=cause)
        finding._add(request_id, when)
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    silent = []
    for (model, env), move in sorted(deploys.items()):
        allof = stream.get((model, env))
        if allof is None:
            continue  # the model does not record in this environment: nothing to judge
        ours = running.get((model, env))
        if ours is not None and ours[0] >= 2:
            gap = (_when(ours[2]) - _when(ours[1])) / (ours[0] - 1)
        elif allof[0] >= 2:
            gap = (_when(allof[2]) - _when(allof[1])) / (allof[0] - 1)
        else:
            continue
        since = ours[2] if ours is not None else move.time
        quiet = moment - _when(since)
        if quiet > max(gap * quiet_factor, min_quiet):
            last = f"its last record was at {ours[2]}" if ours else "it has no record since then"
            silent.append(
                Finding(
                    "silent",
                    model,
                    move.version,
                    env,
                    f"{model} {move.version}, deployed to {env} at {move.time} (seq {move.seq}), "
                    f"stopped producing records: {last}, {_duration(quiet)} ago, over "
                    f"{quiet_factor:g} times its usual gap of {_duration(gap)}",
                    count=ours[0] if ours else 0,
                    first_time=ours[1] if ours else None,
                    last_time=ours[2] if ours else None,
                    cause_seq=move.seq,
                )
            )
    ordered = sorted(found.values(), key=lambda f: (f.first_time or "", f.kind, f.model, f.version))
    return ordered + silent


def _duration(span: timedelta) -> str:
    """Return a span of time in words, e.g. '3h 12m' or '4.2s'."""
    seconds = span.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m {int(seconds % 60)}s"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h {minutes % 60}m"
    return f"{hours // 24}d {hours % 24}h"
