"""Exports of a card to other formats: Model Card Toolkit, Hugging Face and CycloneDX (pure).

Each maps the fields ``MODEL-CARDS.md`` lists. What a target has no field for
goes where the target allows extras (CycloneDX ``properties``) or is left out
(Model Card Toolkit forbids extra keys).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import yaml

from auditml.core.card import CardMetric, ModelCard

__all__ = ["to_cyclonedx", "to_huggingface_metadata", "to_mct"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")


def _is_url(text: str | None) -> bool:
    return bool(text) and _URL.match(text or "") is not None


def _value(value: float) -> str:
    """Return a metric value as MCT and CycloneDX want it: a string, exact for integers."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _date(stamp: str | None) -> str | None:
    return None if not stamp else stamp[:10]


def _prune(value: Any) -> Any:
    """Drop None, empty strings, lists and mappings, recursively."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [v for v in (_prune(v) for v in value) if v not in (None, "", [], {})]
    return value


def _change_note(card: ModelCard) -> str | None:
    t = card.training
    if t is None:
        return None
    parts = [f"trained at event {t.seq}"]
    if t.parent_version:
        parts.append(f"follows version {t.parent_version}")
    if t.code and t.code.commit:
        parts.append(f"code {t.code.commit[:12]}")
    return "; ".join(parts)


def _limitations(card: ModelCard) -> list[str]:
    s = card.sections
    out_of_scope = f"Out of scope: {s.out_of_scope_use}" if s.out_of_scope_use else ""
    return [s.limitations or "", out_of_scope]


def _deltas(card: ModelCard) -> list[tuple[str, float, str, str]]:
    """Return each comparison with the baseline as a metric with a confidence interval.

    One per recorded level, named e.g. ``auc_delta vs version 1 (95%, paired bootstrap)``.
    """
    return [
        (
            f"{c.metric}_delta vs version {c.baseline} ({i.level:g}%, {c.interval_method}, "
            f"n={c.n}, p={c.p_value:.3g})",
            c.delta,
            _value(i.low),
            _value(i.high),
        )
        for c in card.comparisons
        for i in c.intervals
    ]


def to_mct(card: ModelCard) -> dict[str, Any]:
    """Return the card as Model Card Toolkit v0.0.2 JSON."""
    s = card.sections
    refs = [r for r in s.references or [] if _is_url(r)]
    citations = [r for r in s.references or [] if not _is_url(r)]
    main = next((a for a in card.artifacts if a.name == "model"), None) or next(
        iter(card.artifacts), None
    )
    doc: dict[str, Any] = {
        "schema_version": "0.0.2",
        "model_details": {
            "name": card.model,
            "overview": s.overview,
            "documentation": s.documentation,
            "owners": [{"name": o.name, "contact": o.contact} for o in s.owners or []],
            "version": {
                "name": card.version,
                "date": _date(card.training.time if card.training else None),
                "diff": _change_note(card),
            },
            "licenses": [{"custom_text": s.license}] if s.license else [],
            "references": [{"reference": r} for r in refs],
            "citations": [
                {"citation": c} for c in [*citations, *([s.citation] if s.citation else [])]
            ],
            "path": None if main is None else main.ref.uri,
        },
        "model_parameters": {
            "model_architecture": s.architecture,
            "input_format": s.input_format,
            "output_format": s.output_format,
            "data": [
                {
                    "name": d.name,
                    "link": d.ref.uri if _is_url(d.ref.uri) else None,
                    "description": f"{d.use} data: {d.ref.uri}"
                    + (f" (SHA-256 {d.ref.sha256})" if d.ref.sha256 else ""),
                }
                for d in card.datasets
            ],
        },
        "quantitative_analysis": {
            "performance_metrics": [
                {"type": m.name, "value": _value(m.value), "slice": m.slice} for m in card.metrics
            ]
            + [
                {
                    "type": kind,
                    "value": _value(delta),
                    "confidence_interval": {"lower_bound": low, "upper_bound": high},
                }
                for kind, delta, low, high in _deltas(card)
            ],
        },
        "considerations": {
            "users": [{"description": u} for u in s.users or []],
            "use_cases": [{"description": s.intended_use}] if s.intended_use else [],
            "limitations": [
                {"description": text}
                for text in (
                    s.limitations,
                    s.out_of_scope_use and f"Out of scope: {s.out_of_scope_use}",
                    card.imported_note and f"Imported history: {card.imported_note}",
                )
                if text
            ],
            "tradeoffs": [{"description": s.tradeoffs}] if s.tradeoffs else [],
            "ethical_considerations": [
                {"name": r.name, "mitigation_strategy": r.mitigation}
                for r in s.ethical_considerations or []
            ],
        },
    }
    pruned: dict[str, Any] = _prune(doc)
    return pruned


def _hf_results(card: ModelCard) -> list[dict[str, Any]]:
    """Group the card's metrics into model-index results: one per dataset and split."""
    task = card.sections.task or "other"
    groups: dict[tuple[str, str | None], list[CardMetric]] = {}
    for metric in card.metrics:
        if metric.slice is not None:
            continue
        name = metric.dataset or ("training data" if metric.source == "training" else "evaluation")
        groups.setdefault((name, metric.split), []).append(metric)
    results = []
    for (name, split), metrics in groups.items():
        dataset: dict[str, Any] = {"type": name, "name": name}
        if split:
            dataset["split"] = split
        results.append(
            {
                "task": {"type": task},
                "dataset": dataset,
                "metrics": [
                    {"type": m.name, "name": m.name, "value": m.value, "verified": False}
                    for m in metrics
                ],
            }
        )
    return results


def to_huggingface_metadata(card: ModelCard) -> dict[str, Any]:
    """Return the YAML front matter of a Hugging Face model card."""
    s = card.sections
    meta: dict[str, Any] = {
        "license": "other" if s.license else None,
        "license_name": s.license,
        "tags": ["auditml", f"auditml-status-{card.status}"],
        "pipeline_tag": s.task,
        "base_model": card.training.base_model if card.training else None,
        "datasets": sorted({d.ref.uri for d in card.datasets if _is_url(d.ref.uri)}),
        "model-index": [{"name": card.model, "results": _hf_results(card)}],
        "auditml": {
            "origin": card.binding.origin,
            "version": card.version,
            "log_size": card.binding.size,
            "log_root": card.binding.root,
            "checkpoint_size": card.binding.checkpoint.size if card.binding.checkpoint else None,
        },
    }
    pruned: dict[str, Any] = _prune(meta)
    if not pruned["model-index"][0].get("results"):
        del pruned["model-index"]
    return pruned


def huggingface_readme(card: ModelCard, body: str) -> str:
    """Return a Hugging Face ``README.md``: YAML front matter, then the Markdown card."""
    front = yaml.safe_dump(
        to_huggingface_metadata(card), sort_keys=False, allow_unicode=True, width=1000
    )
    return f"---\n{front}---\n\n{body}"


def to_cyclonedx(card: ModelCard, *, tool_version: str) -> dict[str, Any]:
    """Return the card as a CycloneDX 1.6 ML-BOM with one ``machine-learning-model`` component."""
    s = card.sections
    ref = f"model:{card.model}@{card.version}"
    hashes = [{"alg": "SHA-256", "content": a.ref.sha256} for a in card.artifacts if a.ref.sha256][
        :1
    ]
    props: list[tuple[str, Any]] = [
        ("auditml:origin", card.binding.origin),
        ("auditml:status", card.status),
        ("auditml:log-size", card.binding.size),
        ("auditml:log-root", card.binding.root),
        ("auditml:completeness", card.completeness.score),
    ]
    if card.binding.checkpoint is not None:
        props += [
            ("auditml:checkpoint-size", card.binding.checkpoint.size),
            ("auditml:checkpoint-root", card.binding.checkpoint.root),
        ]
    props += [
        (f"auditml:event:{e.seq}", f"{e.action} {e.hash}" + (" imported" if e.imported else ""))
        for e in card.binding.events
    ]
    if card.imported_note:
        props.append(("auditml:imported", card.imported_note))
    props += [
        (f"auditml:{name}", getattr(s, name))
        for name in ("out_of_scope_use", "human_oversight", "risk_rating", "fairness", "citation")
        if getattr(s, name)
    ]
    for d in card.decisions:
        signed = f"; signed by {d.signature.name} ({d.signature.meaning})" if d.signature else ""
        mark = "; imported" if d.imported else ""
        props.append((f"auditml:{d.action}:{d.seq}", f"{d.actor} at {d.time}{signed}{mark}"))
    for m in card.deployments:
        mark = "; imported" if m.imported else ""
        props.append(
            (f"auditml:{m.action}:{m.seq}", f"{m.environment} at {m.time} by {m.actor}{mark}")
        )
    if card.training and card.training.code and card.training.code.commit:
        props.append(("auditml:code-commit", card.training.code.commit))
    component: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": ref,
        "name": card.model,
        "version": card.version,
        "description": s.overview,
        "authors": [{"name": o.name} for o in s.owners or []],
        "licenses": [{"license": {"name": s.license}}] if s.license else [],
        "hashes": hashes,
        "externalReferences": [
            {"type": "documentation", "url": r} for r in s.references or [] if _is_url(r)
        ],
        "pedigree": {
            "ancestors": [{"type": "machine-learning-model", "name": card.training.base_model}]
        }
        if card.training and card.training.base_model
        else None,
        "modelCard": {
            "bom-ref": f"{ref}#card",
            "modelParameters": {
                "task": s.task,
                "modelArchitecture": s.architecture,
                "datasets": [
                    {
                        "type": "dataset",
                        "name": d.name,
                        "contents": {"url": d.ref.uri} if _is_url(d.ref.uri) else None,
                        "description": f"{d.use} data: {d.ref.uri}"
                        + (f" (SHA-256 {d.ref.sha256})" if d.ref.sha256 else ""),
                    }
                    for d in card.datasets
                ],
                "inputs": [{"format": s.input_format}] if s.input_format else [],
                "outputs": [{"format": s.output_format}] if s.output_format else [],
            },
            "quantitativeAnalysis": {
                "performanceMetrics": [
                    {"type": m.name, "value": _value(m.value), "slice": m.slice}
                    for m in card.metrics
                ]
                + [
                    {
                        "type": kind,
                        "value": _value(delta),
                        "confidenceInterval": {"lowerBound": low, "upperBound": high},
                    }
                    for kind, delta, low, high in _deltas(card)
                ]
            },
            "considerations": {
                "users": list(s.users or []),
                "useCases": [s.intended_use] if s.intended_use else [],
                "technicalLimitations": [s.limitations] if s.limitations else [],
                "performanceTradeoffs": [s.tradeoffs] if s.tradeoffs else [],
                "ethicalConsiderations": [
                    {"name": r.name, "mitigationStrategy": r.mitigation}
                    for r in s.ethical_considerations or []
                ],
            },
        },
        "properties": [{"name": k, "value": str(v)} for k, v in props],
    }
    serial = uuid.uuid5(
        uuid.NAMESPACE_URL, f"auditml:{card.binding.origin}:{ref}:{card.binding.root}"
    )
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": card.generated_at,
            "tools": {
                "components": [{"type": "application", "name": "auditml", "version": tool_version}]
            },
        },
        "components": [component],
    }
    pruned: dict[str, Any] = _prune(bom)
    return pruned
