"""Policy: who may do what, how many approvals, which metric gates; pure rules over values.

A policy is written in ``auditml.toml`` and takes effect only once it is
recorded on the log as a ``policy.update`` event (``auditml policy apply``), so
the policy in force at any moment is part of the audit trail. With no policy
recorded, :data:`DEFAULT_POLICY` applies::

    separation_of_duties = true          # an approver may not be the version's trainer
    require_reason = ["deploy", "rollback"]   # or true for every decision, false for none
    environments = ["staging", "production"]  # declared names; empty allows any name

    [approvals]                          # distinct approvals needed to deploy
    default = 1
    production = 2

    [roles]                              # actor id -> roles it holds
    "ana@bank.example" = ["trainer"]
    "ben@bank.example" = ["validator"]

    [permissions]                        # action -> roles allowed; unlisted: anyone
    approve = ["validator"]
    deploy = ["release"]

    [gates]                              # metric gates per environment
    production = ["auc >= 0.80", "auc_delta >= 0 at 95%"]   # _delta: the 95% interval
                                         # of a comparison with the baseline (core.compare)

    require_signatures = ["approve"]     # or true / false: Part 11 e-signatures

    [cards]                              # the human sections a model card must have
    required = ["intended_use", "limitations"]
    complete_for = ["production"]        # a deploy there needs a complete card

    [retention]                          # how long each kind of data is kept
    runtime_values = "30d"
    runtime_records = "400d"             # at least 6mo (EU AI Act Art. 19) unless said why

    [processing]                         # GDPR Art. 30 record of processing
    purposes = ["credit decisions"]

    [personal_data]                      # event fields that hold personal data
    event_fields = ["actor.id", "actor.name"]

    [rollout]                            # a deploy there goes through a canary
    production = { canary = "10%", min_requests = 1000, min_duration = "1h" }

    [monitor.production]                 # rollback triggers (auditml monitor)
    triggers = ["error_rate > 0.02", "latency_p95_ms > 250", "score_psi(score) > 0.2"]
    min_requests = 500
    window = "1h"
    [mlflow]                             # an MLflow registry auditml follows and drives
    tracking_uri = "http://mlflow.internal:5000"   # no credentials: MLflow's env vars
    aliases = { production = "champion" }   # environment -> alias deploy moves
    stages = { production = "Production" }  # environment -> stage (watch checks it)
    on_violation = ["/usr/local/bin/page-oncall"]   # run with the violation as JSON on stdin

(:mod:`auditml.core.privacy` describes ``[retention]``, ``[processing]`` and
``[personal_data]`` in full, :mod:`auditml.core.rollout` ``[rollout]`` and ``[monitor]``.)

A policy being recorded (``auditml policy apply``, :meth:`AuditLog.apply_policy`)
is checked more strictly than one read back from the log: every setting must
have its exact type (``separation_of_duties = "no"`` is an error, not false),
``[cards] required`` may name only known card sections, and every permission
must be held by someone: a permission limited to roles that no actor in
``[roles]`` holds is refused (write ``deploy = []`` to let no one deploy on
purpose), and ``policy`` may never be left to no one, which would lock the
policy for ever. A retention period shorter than a legal minimum is refused
unless ``[retention.shorter_because]`` says why. When ``environments`` is
given, every environment another section names must be in it, and (from the
log, see :func:`stranded_environments`) so must every one where a version runs,
unless the policy is recorded with ``allow_stranded``.

The rules themselves are the ``check_*`` functions: each takes the policy and
what the log says, and returns a :class:`Denial` or None. They never write.
"""

# Annotations here are objects, not strings (no ``from __future__ import annotations``):
# pydantic would compile and evaluate each model field's annotation text as the model is
# made, a cost every command pays at import (issue 20).

import functools
import hashlib
import math
import operator
import re
import shlex
import unicodedata
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from auditml.core.card_sections import check_section_name
from auditml.core.compare import COMPARABLE
from auditml.core.events import Comparison
from auditml.core.privacy import (
    Binding,
    PersonalData,
    Processing,
    Retention,
    check_retention,
)
from auditml.core.rollout import MonitorRule, RolloutRule
from auditml.errors import InvalidInputError

__all__ = [
    "DECISIONS",
    "DEFAULT_POLICY",
    "PERMISSIONS",
    "Denial",
    "Gate",
    "MlflowRules",
    "Policy",
    "PolicyChange",
    "PolicyReview",
    "check_recordable",
    "parse_gate",
    "person",
    "policy_changes",
    "policy_from_toml",
    "stranded_environments",
    "undeclared_environments",
    "unknown_gate_metrics",
]

#: Actions whose roles a policy can restrict (``policy`` is changing the policy itself).
PERMISSIONS = (
    "train",
    "evaluate",
    "approve",
    "reject",
    "deploy",
    "rollback",
    "retire",
    "policy",
    "keys",
    "card",
    "incident",
    "privacy",
)
#: Decisions that can be made to require a reason.
DECISIONS = ("approve", "reject", "deploy", "rollback", "retire")

RoleName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_GATE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.:/-]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"(?:\s+at\s+(?P<level>\d+(?:\.\d+)?)\s*%)?\s*$"
)
#: The suffix of a gate on a comparison with the baseline: ``auc_delta >= 0 at 95%``.
DELTA = "_delta"


@dataclass(frozen=True, slots=True)
class Gate:
    """One metric gate, e.g. ``auc >= 0.80``, or a comparison gate ``auc_delta >= 0 at 95%``.

    A comparison gate (``level`` set) checks the bound of the recorded interval
    of the delta at that level: the lower bound for ``>=`` and ``>``, the upper
    bound for ``<=`` and ``<``, so it passes only when the whole interval does.
    """

    metric: str
    op: str
    value: float
    level: float | None = None

    @property
    def compared(self) -> str:
        """Return the metric a comparison gate is on (``auc`` for ``auc_delta``)."""
        return self.metric.removesuffix(DELTA)

    def bound(self, comparison: Comparison) -> float | None:
        """Return the interval bound this gate checks, or None when that level is not recorded."""
        assert self.level is not None
        found = comparison.interval(self.level)
        if found is None:
            return None
        return found.low if self.op in (">=", ">") else found.high

    def passes(
        self,
        metrics: Mapping[str, float],
        comparisons: Mapping[str, tuple[int, Comparison]] | None = None,
    ) -> bool:
        """Return whether the metric (or the comparison's bound) is recorded and satisfies it."""
        if self.level is not None:
            recorded = (comparisons or {}).get(self.compared)
            found = None if recorded is None else self.bound(recorded[1])
        else:
            found = metrics.get(self.metric)
        return found is not None and _OPS[self.op](float(found), self.value)

    def __str__(self) -> str:
        at = "" if self.level is None else f" at {self.level:g}%"
        return f"{self.metric} {self.op} {self.value:g}{at}"


def parse_gate(text: str) -> Gate:
    """Parse ``metric OP number [at L%]``, or raise InvalidInputError saying what is wrong."""
    match = _GATE.match(text)
    if match is None:
        raise InvalidInputError(
            f"metric gate {text!r} is not of the form 'metric OP number', "
            "e.g. 'auc >= 0.80' (OP is one of >= <= > < == !=), or 'metric_delta OP number "
            "at L%' for a comparison with the baseline, e.g. 'auc_delta >= 0 at 95%'"
        )
    value = float(match["value"])
    if not math.isfinite(value):  # 1e999: a gate no metric fails or none passes
        raise InvalidInputError(
            f"metric gate {text!r} compares with {match['value']}, too large for a number: "
            "give a finite threshold, e.g. 'auc >= 0.80'"
        )
    level = None
    if match["level"] is not None:
        level = float(match["level"])
        if not match["metric"].endswith(DELTA) or match["metric"] == DELTA:
            raise InvalidInputError(
                f"metric gate {text!r} gives a confidence level, which only a comparison with "
                "the baseline has: gate the delta, e.g. 'auc_delta >= 0 at 95%'"
            )
        if match["op"] in ("==", "!="):
            raise InvalidInputError(
                f"metric gate {text!r}: an interval is checked with >=, >, <= or <, not "
                f"{match['op']}"
            )
        if not 50 <= level < 100:
            raise InvalidInputError(
                f"metric gate {text!r}: the confidence level must be from 50% to below 100%"
            )
    return Gate(match["metric"], match["op"], value, level)


class CardRules(BaseModel):
    """What a model card must hold: the human sections required, and where that gates a deploy."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True)

    required: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=lambda: [
            "intended_use",
            "out_of_scope_use",
            "limitations",
            "ethical_considerations",
        ]
    )
    complete_for: list[EnvName] = Field(default_factory=list)


class MlflowRules(BaseModel):
    """How auditml works beside an MLflow registry (``[mlflow]``).

    ``aliases`` and ``stages`` map an auditml environment to the MLflow alias
    and stage that stand for it: ``auditml deploy`` and ``rollback`` move the
    alias after recording the decision, and ``auditml mlflow watch`` records a
    move made in MLflow that policy would have refused as a violation, then
    runs ``on_violation`` (an argument list, no shell) with it as JSON on stdin.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True)

    tracking_uri: Annotated[str, StringConstraints(min_length=1)] | None = None
    aliases: dict[EnvName, Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(
        default_factory=dict
    )
    stages: dict[EnvName, Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=dict
    )
    on_violation: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list
    )

    @field_validator("tracking_uri")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from auditml.core.uri import scrub_uri

        _, removed = scrub_uri(value)
        if removed:
            raise ValueError(
                f"the tracking URI holds credentials ({', '.join(removed)}), which the log "
                "would keep for ever: remove them and give them to MLflow through its "
                "environment (MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD, "
                "MLFLOW_TRACKING_TOKEN)"
            )
        return value

    def environment_of_alias(self, alias: str) -> str | None:
        """Return the environment whose alias is ``alias``, or None."""
        return next((env for env, name in self.aliases.items() if name == alias), None)

    def environment_of_stage(self, stage: str) -> str | None:
        """Return the environment whose stage is ``stage`` (any case), or None."""
        wanted = stage.lower()
        return next((env for env, name in self.stages.items() if name.lower() == wanted), None)


class Policy(BaseModel):
    """The rules in force; every field has the default that applies when none is recorded."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, strict=True, defer_build=True
    )

    separation_of_duties: bool = True
    require_reason: bool | list[Literal["approve", "reject", "deploy", "rollback", "retire"]] = (
        False
    )
    environments: list[EnvName] = Field(default_factory=list)
    approvals: dict[str, Annotated[int, Field(ge=0, le=100)]] = Field(
        default_factory=lambda: {"default": 1}
    )
    roles: dict[Annotated[str, StringConstraints(min_length=1)], list[RoleName]] = Field(
        default_factory=dict
    )
    permissions: dict[str, list[RoleName]] = Field(default_factory=dict)
    gates: dict[str, list[str]] = Field(default_factory=dict)
    require_signatures: bool | list[Literal["approve", "reject"]] = False
    cards: CardRules = Field(default_factory=lambda: CardRules())
    retention: Retention = Field(default_factory=lambda: Retention())
    processing: Processing = Field(default_factory=lambda: Processing())
    personal_data: PersonalData = Field(default_factory=lambda: PersonalData())
    rollout: dict[EnvName, RolloutRule] = Field(default_factory=dict)
    monitor: dict[EnvName, MonitorRule] = Field(default_factory=dict)
    mlflow: MlflowRules = Field(default_factory=lambda: MlflowRules())

    @field_validator("permissions")
    @classmethod
    def _known_permissions(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in value:
            if name not in PERMISSIONS:
                raise ValueError(
                    f"unknown permission {name!r}: permissions are {', '.join(PERMISSIONS)}"
                )
        return value

    @field_validator("gates")
    @classmethod
    def _gates_parse(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for texts in value.values():
            for text in texts:
                parse_gate(text)
        return value

    def monitor_actors(self) -> set[str]:
        """Return the people (as :func:`person` folds them) that act as a monitor anywhere."""
        return {person(rule.actor) for rule in self.monitor.values()}

    def approvals_needed(self, environment: str) -> int:
        """Return how many distinct approvals a deploy to ``environment`` needs."""
        return self.approvals.get(environment, self.approvals.get("default", 1))

    def gates_for(self, environment: str) -> list[Gate]:
        """Return the metric gates of ``environment`` (``default`` gates apply everywhere)."""
        texts = [*self.gates.get("default", []), *self.gates.get(environment, [])]
        return [parse_gate(text) for text in texts]

    def signature_required(self, decision: str) -> bool:
        """Return whether ``decision`` (approve or reject) must carry an e-signature."""
        if isinstance(self.require_signatures, bool):
            return self.require_signatures
        return decision in self.require_signatures

    def reason_required(self, decision: str) -> bool:
        """Return whether ``decision`` must give a reason."""
        if isinstance(self.require_reason, bool):
            return self.require_reason
        return decision in self.require_reason

    def roles_of(self, actor: str) -> list[str]:
        """Return the roles ``actor`` holds: those of every ``[roles]`` id naming that person.

        Ids are matched as separation of duties counts people (:func:`person`:
        case, spaces and invisible characters aside), so ``Dana@Bank.Example``
        holds the roles given to ``dana@bank.example``.
        """
        wanted = person(actor)
        found: dict[str, None] = {}
        for key, roles in self.roles.items():
            if key == actor or person(key) == wanted:
                found.update(dict.fromkeys(roles))
        return list(found)

    def allowed_roles(self, permission: str) -> list[str] | None:
        """Return the roles allowed to do ``permission``, or None when anyone may."""
        return self.permissions.get(permission)

    def as_data(self) -> dict[str, Any]:
        """Return the policy as the JSON recorded in a ``policy.update`` event.

        ``[mlflow]`` is left out when it says nothing, so a policy without it
        records the same bytes it did before the table existed.
        """
        data = self.model_dump(mode="json")
        if self.mlflow == MlflowRules():
            del data["mlflow"]
        return data


DEFAULT_POLICY = Policy()


@dataclass(frozen=True, slots=True)
class Denial:
    """Why policy refuses an action: the rule, a sentence, and what would satisfy it."""

    rule: str
    message: str
    remedy: str


def policy_from_toml(raw: bytes, *, where: str) -> Policy:
    """Parse the bytes of a TOML policy as one being recorded (strict), or raise clearly.

    ``where`` names the source in messages (the file's path). Reading the file
    is :func:`auditml._internal.policyfile.load_policy`'s work.
    """
    import tomllib  # only a policy being recorded is TOML: the log holds JSON (issue 20)

    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInputError(f"{where} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"{where} is not valid TOML: {exc}") from None
    if isinstance(table.get("policy"), dict) and len(table) == 1:
        table = table["policy"]  # a [policy] table is accepted as well as top-level keys
    return policy_from(table, where=where, strict=True)


def policy_from(table: Mapping[str, Any], *, where: str = "policy", strict: bool = False) -> Policy:
    """Validate a policy table, naming the first wrong key and what it should be.

    ``strict`` (a policy being recorded) takes each setting only in its exact
    type; a policy read back from the log was recorded from a valid one.
    """
    try:
        return Policy.model_validate(dict(table), strict=strict)
    except ValidationError as exc:
        raise InvalidInputError(f"{where}: {_first_problem(exc)}") from None


_UNION_TAG = re.compile(r"^(bool|int|float|str|(list|dict|literal)\[.*\])$")
_EXPECTED = {
    "bool_type": "true or false",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "literal_error": "one of the names listed",
}


def _toml_kind(value: object) -> str:
    """Name a value as TOML would, for an error message."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _first_problem(exc: ValidationError) -> str:
    """Describe the first problem of a policy: the key, what it must be, and what it was."""
    errors = exc.errors()
    first = errors[0]
    if first["type"] == "extra_forbidden":
        known = ", ".join(sorted(_table_at(first["loc"][:-1]).model_fields))
        loc = ".".join(str(part) for part in first["loc"]) or "policy"
        return f"{loc}: unknown setting (known settings: {known})"
    # A setting of several types (true/false, or a list) reports one error per type,
    # each under the type's name; the one that looked inside the value says most.
    related = [e for e in errors if e["loc"][:1] == first["loc"][:1]]
    deepest = max(related, key=lambda e: len(e["loc"]))
    if len(deepest["loc"]) > len(first["loc"]):
        first = deepest
    loc = ".".join(str(p) for p in first["loc"] if not _UNION_TAG.match(str(p))) or "policy"
    if first["type"] not in _EXPECTED:
        return f"{loc}: {first['msg'].removeprefix('Value error, ')}"
    if first["type"] == "literal_error":
        expected = first["msg"].removeprefix("Input should be ")
    else:
        alternatives = [
            e["type"]
            for e in related
            if len(e["loc"]) == len(first["loc"]) and e["type"] in _EXPECTED
        ]
        expected = " or ".join(dict.fromkeys(_EXPECTED.get(t, t) for t in alternatives))
    return f"{loc}: expected {expected}, got {_toml_kind(first['input'])}"


def _table_at(loc: Sequence[int | str]) -> type[BaseModel]:
    """Return the model of the policy table at ``loc`` (``()``: the policy itself)."""
    model: type[BaseModel] = Policy
    keyed = False  # the last step was a table of tables (e.g. [monitor]): this part is a key
    for part in loc:
        if keyed:
            keyed = False
            continue
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
            keyed = True
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return model


def check_recordable(policy: Policy) -> None:
    """Refuse a policy that must not be recorded: unknown card sections, permissions no one holds.

    When the policy declares its environments, every other section may name
    only those (:func:`undeclared_environments`): a rule for another would
    never apply, and usually is a typo or a forgotten declaration.

    A retention period shorter than a legal minimum is refused unless the policy
    says why (:func:`auditml.core.privacy.check_retention`), and a gate on a
    comparison must name a metric auditml compares (``auc_delta``, ``accuracy_delta``).

    A permission limited to roles that no actor holds would refuse that action
    to everyone; for ``policy`` that locks the log's policy for ever. Write an
    empty list (``deploy = []``) to let no one do an action on purpose; the
    ``policy`` permission must always be held by someone.
    """
    for name in policy.cards.required:
        check_section_name(name, where="cards.required")
    for where, environment in undeclared_environments(policy)[:1]:
        raise InvalidInputError(
            f"{where} names environment {environment!r}, which the environments list "
            f"({', '.join(policy.environments)}) leaves out: that rule could never apply, and "
            f"no decision could name {environment!r}. Add {environment!r} to environments, "
            "or remove the rule"
        )
    for environment, texts in policy.gates.items():
        for gate in map(parse_gate, texts):
            if gate.level is not None and gate.compared not in COMPARABLE:
                raise InvalidInputError(
                    f"gates.{environment}: {gate} gates a comparison of {gate.compared!r}, "
                    f"which auditml cannot compare: comparable metrics are "
                    f"{', '.join(COMPARABLE)} (e.g. 'auc_delta >= 0 at 95%')"
                )
    check_retention(policy.retention)
    held = {role for roles in policy.roles.values() for role in roles}
    for permission, allowed in policy.permissions.items():
        if set(allowed) & held:
            continue
        if permission == "policy":
            granted = (
                f"only to role {' or '.join(allowed)}, which no one holds"
                if allowed
                else ("to no one")
            )
            raise InvalidInputError(
                f"permissions.policy grants changing the policy {granted}: once recorded, no one "
                "could ever change the policy again. Give an actor that role in [roles] "
                '(e.g. "officer@bank.example" = ["officer"]), or leave policy out of '
                "[permissions] to let anyone change it"
            )
        if allowed:
            raise InvalidInputError(
                f"permissions.{permission} is granted only to role {' or '.join(allowed)}, which "
                f"no one holds in [roles], so no one could {permission}. Give an actor that "
                f"role, or write {permission} = [] to let no one {permission} on purpose"
            )


def undeclared_environments(policy: Policy) -> list[tuple[str, str]]:
    """Return ``(setting, environment)`` for each environment a rule names but not declared.

    Nothing is undeclared when ``environments`` is empty (any name is allowed);
    ``default`` in ``[approvals]`` and ``[gates]`` is every environment, not one.
    """
    declared = set(policy.environments)
    if not declared:
        return []
    named: list[tuple[str, str]] = [
        *((f"approvals.{env}", env) for env in policy.approvals if env != "default"),
        *((f"gates.{env}", env) for env in policy.gates if env != "default"),
        *((f"rollout.{env}", env) for env in policy.rollout),
        *((f"monitor.{env}", env) for env in policy.monitor),
        *(("cards.complete_for", env) for env in policy.cards.complete_for),
        *((f"mlflow.aliases.{env}", env) for env in policy.mlflow.aliases),
        *((f"mlflow.stages.{env}", env) for env in policy.mlflow.stages),
    ]
    return [(where, env) for where, env in named if env not in declared]


def stranded_environments(
    policy: Policy, running: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """Return the environments where something runs (``running``) that ``policy`` would not declare.

    Once such a policy is in force no decision may name the environment, so
    what runs there could not be rolled back, replaced or retired.
    """
    if not policy.environments:
        return {}
    return {
        env: list(what)
        for env, what in sorted(running.items())
        if what and env not in policy.environments
    }


def unknown_gate_metrics(policy: Policy, known: Collection[str]) -> tuple[str, ...]:
    """Return a warning for each gate on a metric no run or evaluation has recorded (``known``).

    Only a warning: a new metric may be recorded after its gate. A comparison
    gate (``auc_delta``) is on the metric it compares (``auc``).
    """
    import difflib  # only a policy being recorded needs it

    names = sorted(known)
    found: list[str] = []
    for environment, texts in policy.gates.items():
        for gate in map(parse_gate, texts):
            metric = gate.compared if gate.level is not None else gate.metric
            if metric in known:
                continue
            close = difflib.get_close_matches(metric, names, n=1)
            if not names:
                hint = "no metric is recorded on the log yet"
            elif close:
                hint = f"did you mean {close[0]!r}?"
            else:
                more = ", ..." if len(names) > 10 else ""
                hint = f"recorded metrics: {', '.join(names[:10])}{more}"
            found.append(
                f"gates.{environment}: {gate} names metric {metric!r}, which no training run or "
                f"evaluation on the log has recorded; {hint} (a deploy there fails until a "
                "version has it)"
            )
    return tuple(found)


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """One setting a new policy adds, removes or changes, with its old and new values."""

    kind: Literal["added", "removed", "changed"]
    setting: str
    old: Any = None
    new: Any = None

    def as_dict(self) -> dict[str, Any]:
        """Return the change as plain JSON-able values."""
        return {"kind": self.kind, "setting": self.setting, "old": self.old, "new": self.new}


def policy_changes(old: Policy, new: Policy) -> tuple[PolicyChange, ...]:
    """Return what recording ``new`` over ``old`` changes, setting by setting.

    Tables are compared key by key one level down (``roles.ana@bank.example``,
    ``permissions.deploy``); a setting a policy file leaves out takes its
    default, so a one-line file shows every rule it drops as removed.
    """
    return tuple(_diff(old.model_dump(mode="json"), new.model_dump(mode="json"), "", 2))


def _diff(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str, depth: int
) -> Iterator[PolicyChange]:
    for key in dict.fromkeys([*old, *new]):
        name = f"{prefix}{key}"
        if key not in new:
            yield PolicyChange("removed", name, old=old[key])
        elif key not in old:
            yield PolicyChange("added", name, new=new[key])
        elif old[key] != new[key]:
            if depth > 1 and isinstance(old[key], dict) and isinstance(new[key], dict):
                yield from _diff(old[key], new[key], f"{name}.", depth - 1)
            else:
                yield PolicyChange("changed", name, old=old[key], new=new[key])


@dataclass(frozen=True, slots=True)
class PolicyReview:
    """What recording a policy would do: its changes, its warnings, what it strands.

    ``in_force_seq`` is the event of the policy it was compared with (None: the
    default); ``stranded`` maps each environment the policy would leave
    undeclared to what runs there (only ever non-empty when that was allowed).
    """

    in_force_seq: int | None
    changes: tuple[PolicyChange, ...]
    warnings: tuple[str, ...] = ()
    stranded: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the review as plain JSON-able values."""
        return {
            "in_force_seq": self.in_force_seq,
            "changes": [c.as_dict() for c in self.changes],
            "warnings": list(self.warnings),
            "stranded": {env: list(what) for env, what in self.stranded.items()},
        }


def policy_digest(raw: bytes) -> str:
    """Return the SHA-256 of a policy file's bytes, as recorded with the policy."""
    return hashlib.sha256(raw).hexdigest()


# -- the rules ---------------------------------------------------------------


def _ids(actor: str | Sequence[str]) -> tuple[str, ...]:
    """Return the ids an actor answers to: one id, or its pseudonym then the id it gave."""
    return (actor,) if isinstance(actor, str) else tuple(actor)


def _held(policy: Policy, ids: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(role for one in ids for role in policy.roles_of(one)))


#: How a denial says what a permission lets one do, where its name is no verb.
_DOING = {
    "policy": "change the policy",
    "keys": "register or revoke keys",
    "card": "update model cards",
    "incident": "open or close incidents",
    "privacy": "erase personal data or apply retention",
}


def check_role(policy: Policy, actor: str | Sequence[str], permission: str) -> Denial | None:
    """Refuse when the policy restricts ``permission`` to roles ``actor`` does not hold.

    ``actor`` is an id, or every id one actor answers to (a pseudonym and the
    e-mail behind it): roles given to any of them count. Messages name only the
    first, the id that goes on the log.
    """
    allowed = policy.allowed_roles(permission)
    if allowed is None:
        return None
    ids = _ids(actor)
    held = _held(policy, ids)
    if set(held) & set(allowed):
        return None
    holds = f"holds {', '.join(held)}" if held else "holds no role"
    return Denial(
        "role",
        f"{ids[0]} may not {_DOING.get(permission, permission)}: it {holds}, and "
        f"[permissions] {permission} needs one of {', '.join(allowed)}",
        f"have someone with role {' or '.join(allowed)} do it, or give {ids[0]} that role "
        "in auditml.toml and record it with `auditml policy apply`",
    )


def role_for(policy: Policy, actor: str | Sequence[str], permission: str) -> str | None:
    """Return the role under which ``actor`` may do ``permission``, when roles are set."""
    allowed = policy.allowed_roles(permission) or []
    held = _held(policy, _ids(actor))
    for role in held:
        if role in allowed:
            return role
    return held[0] if held else None


def check_reason(policy: Policy, decision: str, reason: str | None) -> Denial | None:
    """Refuse a decision without a reason when the policy requires one."""
    if policy.reason_required(decision) and not (reason and reason.strip()):
        return Denial(
            "reason-required",
            f"a {decision} must give a reason under the policy in force",
            "say why with --reason (or reason=)",
        )
    return None


@functools.lru_cache(maxsize=4096)
def person(actor: str) -> str:
    """Return who an actor id names, for counting people: case, spaces and invisibles ignored.

    ``Victor@bank.example``, ``victor@bank.example `` and one with a zero-width
    space (or any other code point Unicode ignores by default, e.g. U+034F or a
    variation selector) are one person to separation of duties and to distinct approvals.
    """
    folded = unicodedata.normalize("NFKC", actor).casefold()
    return "".join(
        c
        for c in folded
        if not c.isspace() and unicodedata.category(c)[0] != "C" and not _ignorable(c)
    )


#: Unicode's Default_Ignorable_Code_Point ranges outside category C (marks and fillers
#: that render as nothing, such as U+034F, U+3164 and the variation selectors).
_IGNORABLE = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0000, 0xE0FFF),
)


def _ignorable(c: str) -> bool:
    """Return whether ``c`` is invisible by Unicode's default (and not already in category C)."""
    code = ord(c)
    return any(low <= code <= high for low, high in _IGNORABLE)


def person_of(actor: str, people: Mapping[str, str] | None = None) -> str:
    """Return who an actor id names: a pseudonym's bound person, else :func:`person` of it.

    ``people`` maps pseudonyms to the (folded) ids the actor directory binds to
    them through their ``actor.enroll`` commitments, so one person acting under
    an e-mail and under a pseudonym counts once.
    """
    if people:
        found = people.get(actor)
        if found is not None:
            return found
    return person(actor)


def check_self_approval(
    policy: Policy,
    actor: str | Sequence[str],
    trainers: Sequence[str],
    version: str,
    binding: Binding | None = None,
) -> Denial | None:
    """Refuse an approval by the person who trained the version (separation of duties).

    The trainers are the ids on the log: pseudonyms for events recorded with
    pseudonymous actors, the ids people gave before. ``actor`` may be both;
    ``binding`` says who each pseudonym is (see :func:`person_of`). A trainer
    whose identity was erased is nobody now, and may come back under a new
    pseudonym: only someone who first acted under a pseudonym before that
    erasure is surely someone else.
    """
    if not policy.separation_of_duties:
        return None
    ids = _ids(actor)
    people = binding.people if binding is not None else None
    trained = {person_of(t, people) for t in trainers}
    if any(person_of(one, people) in trained for one in ids):
        return Denial(
            "separation-of-duties",
            f"{ids[0]} trained version {version} and may not approve it",
            "have a second person, who did not train it, approve it",
        )
    if binding is None:
        return None
    gone = [binding.erased[t] for t in trainers if t in binding.erased]
    if not gone:
        return None
    erased = min(gone)
    since = [binding.enrolled[one] for one in ids if one in binding.enrolled]
    if since and min(since) < erased:
        return None
    return Denial(
        "separation-of-duties",
        f"version {version} was trained by an identity erased at event {erased}, and "
        f"{ids[0]} did not act under a pseudonym before then, so auditml cannot tell that "
        "they are not the same person",
        f"have someone who acted under a pseudonym before event {erased} approve it",
    )


def check_gates(
    policy: Policy,
    environment: str,
    metrics: Mapping[str, float],
    version: str,
    comparisons: Mapping[str, tuple[int, Comparison]] | None = None,
) -> Denial | None:
    """Refuse a deploy whose recorded metrics (or comparisons) miss one of the environment's gates.

    ``comparisons`` maps a metric to the newest live comparison of it with a
    baseline (its event's seq, and the comparison), which ``... at L%`` gates check.
    """
    for gate in policy.gates_for(environment):
        if gate.passes(metrics, comparisons):
            continue
        if gate.level is not None:
            return _comparison_denial(gate, environment, version, (comparisons or {}))
        found = metrics.get(gate.metric)
        has = "has no recorded value" if found is None else f"is {found:g}"
        return Denial(
            "metric-gate",
            f"version {version} fails the {environment} gate {gate}: {gate.metric} {has}",
            f"record an evaluation of version {version} that meets {gate}, "
            "or deploy a version that does",
        )
    return None


def _comparison_denial(
    gate: Gate,
    environment: str,
    version: str,
    comparisons: Mapping[str, tuple[int, Comparison]],
) -> Denial:
    """Say why a comparison gate fails: no comparison, no interval at its level, or the bound."""
    assert gate.level is not None
    fails = f"version {version} fails the {environment} gate {gate}"
    recorded = comparisons.get(gate.compared)
    rerun = (
        f"`auditml evaluate MODEL {shlex.quote(version)} --examples FILE --baseline V "
        f"--compare {shlex.quote(gate.compared)} --confidence {gate.level:g}`"
    )
    if recorded is None:
        return Denial(
            "metric-gate",
            f"{fails}: no comparison of {gate.compared} with a baseline is recorded",
            f"record one with {rerun}, or deploy a version that has one",
        )
    seq, comparison = recorded
    bound = gate.bound(comparison)
    if bound is None:
        levels = ", ".join(f"{i.level:g}%" for i in comparison.intervals)
        return Denial(
            "metric-gate",
            f"{fails}: the comparison of {gate.compared} with version {comparison.baseline} "
            f"(event {seq}) has intervals at {levels}, not at {gate.level:g}%",
            f"record the comparison again at {gate.level:g}% with {rerun}",
        )
    found = comparison.interval(gate.level)
    assert found is not None
    side = "lower" if gate.op in (">=", ">") else "upper"
    return Denial(
        "metric-gate",
        f"{fails}: the {gate.level:g}% interval of {gate.metric} against version "
        f"{comparison.baseline} (event {seq}, n={comparison.n}) is [{found.low:.4g}, "
        f"{found.high:.4g}], and its {side} bound {bound:.4g} is not {gate.op} {gate.value:g}",
        f"show the difference on more examples, or deploy a version that beats "
        f"version {comparison.baseline} by that margin",
    )


def check_approvals(
    policy: Policy,
    environment: str,
    approvers: Sequence[str],
    model: str,
    version: str,
    people: Mapping[str, str] | None = None,
) -> Denial | None:
    """Refuse a deploy that lacks the distinct approvals the environment needs."""
    needed = policy.approvals_needed(environment)
    have = len({person_of(a, people) for a in approvers})
    if have >= needed:
        return None
    if have == 0:
        message = f"version {version} has no approval for {environment}"
    else:
        message = (
            f"version {version} has {have} distinct approval(s) for {environment}, "
            f"and {needed} are needed"
        )
    return Denial(
        "approval-required",
        message,
        f"record {needed - have} more approval(s) by other people: "
        f"`auditml approve {shlex.quote(model)} {shlex.quote(version)}`",
    )
