"""The names of a model card's human sections and the headings they print under (pure).

The vocabulary sits here, below both the policy (``[cards] required`` names
sections) and the card model (:class:`auditml.core.card.HumanSections` has
one field per section), so neither has to import the other.
"""

from __future__ import annotations

import difflib

from auditml.errors import InvalidInputError

__all__ = ["SECTION_TITLES", "check_section_name"]

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


def check_section_name(name: object, *, where: str) -> None:
    """Refuse a card section name that is not known, suggesting the closest known one."""
    if name not in SECTION_TITLES:
        close = difflib.get_close_matches(str(name), SECTION_TITLES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidInputError(
            f"{where}: unknown section {name!r}{hint}; known sections are "
            + ", ".join(SECTION_TITLES)
        )
