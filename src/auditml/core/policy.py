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
    production = ["auc >= 0.80"]

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

(:mod:`auditml.core.privacy` describes ``[retention]``, ``[processing]`` and
``[personal_data]`` in full.)

A policy being recorded (``auditml policy apply``, :meth:`AuditLog.apply_policy`)
is checked more strictly than one read back from the log: every setting must
have its exact type (``separation_of_duties = "no"`` is an error, not false),
``[cards] required`` may name only known card sections, and every permission
must be held by someone: a permission limited to roles that no actor in
``[roles]`` holds is refused (write ``deploy = []`` to let no one deploy on
purpose), and ``policy`` may never be left to no one, which would lock the
policy for ever. A retention period shorter than a legal minimum is refused
unless ``[retention.shorter_because]`` says why.

The rules themselves are the ``check_*`` functions: each takes the policy and
what the log says, and returns a :class:`Denial` or None. They never write.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
import shlex
import tomllib
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from auditml.core.card_sections import check_section_name
from auditml.core.privacy import PersonalData, Processing, Retention, check_retention
from auditml.errors import InvalidInputError

__all__ = [
    "DECISIONS",
    "DEFAULT_POLICY",
    "PERMISSIONS",
    "Denial",
    "Gate",
    "Policy",
    "check_recordable",
    "parse_gate",
    "person",
    "policy_from_toml",
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
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True, slots=True)
class Gate:
    """One metric gate, e.g. ``auc >= 0.80``."""

    metric: str
    op: str
    value: float

    def passes(self, metrics: Mapping[str, float]) -> bool:
        """Return whether ``metrics`` holds the metric and it satisfies the gate."""
        found = metrics.get(self.metric)
        return found is not None and _OPS[self.op](float(found), self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


def parse_gate(text: str) -> Gate:
    """Parse ``metric OP number``, or raise InvalidInputError saying what is wrong."""
    match = _GATE.match(text)
    if match is None:
        raise InvalidInputError(
            f"metric gate {text!r} is not of the form 'metric OP number', "
            "e.g. 'auc >= 0.80' (OP is one of >= <= > < == !=)"
        )
    value = float(match["value"])
    if not math.isfinite(value):  # 1e999: a gate no metric fails or none passes
        raise InvalidInputError(
            f"metric gate {text!r} compares with {match['value']}, too large for a number: "
            "give a finite threshold, e.g. 'auc >= 0.80'"
        )
    return Gate(match["metric"], match["op"], value)


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
        """Return the roles ``actor`` holds."""
        return list(self.roles.get(actor, []))

    def allowed_roles(self, permission: str) -> list[str] | None:
        """Return the roles allowed to do ``permission``, or None when anyone may."""
        return self.permissions.get(permission)

    def as_data(self) -> dict[str, Any]:
        """Return the policy as the JSON recorded in a ``policy.update`` event."""
        return self.model_dump(mode="json")


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
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return model


def check_recordable(policy: Policy) -> None:
    """Refuse a policy that must not be recorded: unknown card sections, permissions no one holds.

    A retention period shorter than a legal minimum is refused unless the policy
    says why (:func:`auditml.core.privacy.check_retention`).

    A permission limited to roles that no actor holds would refuse that action
    to everyone; for ``policy`` that locks the log's policy for ever. Write an
    empty list (``deploy = []``) to let no one do an action on purpose; the
    ``policy`` permission must always be held by someone.
    """
    for name in policy.cards.required:
        check_section_name(name, where="cards.required")
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


def policy_digest(raw: bytes) -> str:
    """Return the SHA-256 of a policy file's bytes, as recorded with the policy."""
    return hashlib.sha256(raw).hexdigest()


# -- the rules ---------------------------------------------------------------


def check_role(policy: Policy, actor: str, permission: str) -> Denial | None:
    """Refuse when the policy restricts ``permission`` to roles ``actor`` does not hold."""
    allowed = policy.allowed_roles(permission)
    if allowed is None:
        return None
    held = policy.roles_of(actor)
    if set(held) & set(allowed):
        return None
    holds = f"holds {', '.join(held)}" if held else "holds no role"
    return Denial(
        "role",
        f"{actor} may not {permission}: it {holds}, and {permission} needs one of "
        f"{', '.join(allowed)}",
        f"have someone with role {' or '.join(allowed)} do it, or give {actor} that role "
        "in auditml.toml and record it with `auditml policy apply`",
    )


def role_for(policy: Policy, actor: str, permission: str) -> str | None:
    """Return the role under which ``actor`` may do ``permission``, when roles are set."""
    allowed = policy.allowed_roles(permission) or []
    held = policy.roles_of(actor)
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


def person(actor: str) -> str:
    """Return who an actor id names, for counting people: case, spaces and invisibles ignored.

    ``Victor@bank.example``, ``victor@bank.example `` and one with a zero-width
    space are one person to separation of duties and to distinct approvals.
    """
    folded = unicodedata.normalize("NFKC", actor).casefold()
    return "".join(c for c in folded if not c.isspace() and unicodedata.category(c)[0] != "C")


def check_self_approval(
    policy: Policy, actor: str, trainers: Sequence[str], version: str
) -> Denial | None:
    """Refuse an approval by the person who trained the version (separation of duties)."""
    if policy.separation_of_duties and person(actor) in {person(t) for t in trainers}:
        return Denial(
            "separation-of-duties",
            f"{actor} trained version {version} and may not approve it",
            "have a second person, who did not train it, approve it",
        )
    return None


def check_gates(
    policy: Policy, environment: str, metrics: Mapping[str, float], version: str
) -> Denial | None:
    """Refuse a deploy whose recorded metrics miss one of the environment's gates."""
    for gate in policy.gates_for(environment):
        if gate.passes(metrics):
            continue
        found = metrics.get(gate.metric)
        has = "has no recorded value" if found is None else f"is {found:g}"
        return Denial(
            "metric-gate",
            f"version {version} fails the {environment} gate {gate}: {gate.metric} {has}",
            f"record an evaluation of version {version} that meets {gate}, "
            "or deploy a version that does",
        )
    return None


def check_approvals(
    policy: Policy, environment: str, approvers: Sequence[str], model: str, version: str
) -> Denial | None:
    """Refuse a deploy that lacks the distinct approvals the environment needs."""
    needed = policy.approvals_needed(environment)
    have = len({person(a) for a in approvers})
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
