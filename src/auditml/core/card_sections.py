"""The names of a model card's human sections and the headings they print under (pure).

The vocabulary sits here, below both the policy (``[cards] required`` names
sections) and the card model (:class:`auditml.core.card.HumanSections` has
one field per section), so neither has to import the other.
"""

from __future__ import annotations

import difflib

from auditml.errors import InvalidInputError

__all__ = ["SECTION_EXAMPLES", "SECTION_TITLES", "check_section_name"]

#: Section name to the heading a card prints, in the order a card shows them.
SECTION_TITLES: dict[str, str] = {
    "overview": "Overview",
    "documentation": "Documentation",
    "owners": "Owners",
    "license": "License",
    "references": "References",
    "citation": "Citation",
    "task": "Task",
    "architecture": "Architecture",
    "input_format": "Input format",
    "output_format": "Output format",
    "intended_use": "Intended use",
    "users": "Intended users",
    "out_of_scope_use": "Out-of-scope use",
    "limitations": "Limitations",
    "tradeoffs": "Trade-offs",
    "ethical_considerations": "Ethical considerations",
    "fairness": "Fairness",
    "human_oversight": "Human oversight",
    "risk_rating": "Risk rating",
    "environmental_impact": "Environmental impact",
}


#: What each section holds, as a YAML example a card template shows (each one valid).
SECTION_EXAMPLES: dict[str, str] = {
    "overview": "overview: What the model does, for whom, in a sentence or two.",
    "documentation": "documentation: https://wiki.example/credit-risk",
    "owners": "owners:\n  - name: Credit Analytics\n    contact: credit-analytics@bank.example",
    "license": "license: proprietary",
    "references": "references:\n  - https://doi.org/10.0000/example",
    "citation": "citation: Credit Analytics (2026). Credit risk scorecard.",
    "task": "task: tabular-classification",
    "architecture": "architecture: gradient-boosted trees, 300 trees of depth 6",
    "input_format": "input_format: one row per applicant; income, debt_ratio, age",
    "output_format": "output_format: probability of default, 0 to 1",
    "intended_use": "intended_use: Rank applications for review by an underwriter.",
    "users": "users:\n  - retail credit underwriters",
    "out_of_scope_use": "out_of_scope_use: Automated refusal without human review.",
    "limitations": "limitations: Under-represents applicants under 25.",
    "tradeoffs": "tradeoffs: Recall favoured over precision at the review threshold.",
    "ethical_considerations": (
        "ethical_considerations:\n  - name: Age bias\n    mitigation: Approval rates by age "
        "band are monitored monthly."
    ),
    "fairness": "fairness: AUC within 0.03 across age bands on the holdout set.",
    "human_oversight": "human_oversight: An underwriter reviews every score before a decision.",
    "risk_rating": "risk_rating: high   # one of low, medium, high, unacceptable",
    "environmental_impact": "environmental_impact: About 2 CPU-hours per training run.",
}


def check_section_name(name: object, *, where: str) -> None:
    """Refuse a card section name that is not known, suggesting the closest known one."""
    if name not in SECTION_TITLES:
        close = difflib.get_close_matches(str(name), SECTION_TITLES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidInputError(
            f"{where}: unknown section {name!r}{hint}; known sections are "
            + ", ".join(SECTION_TITLES)
        )
