"""Model cards built from the log: the card model, building it, rendering and exporting it."""

from auditml.cards.build import build_card, card_from_records
from auditml.cards.model import SECTION_TITLES, HumanSections, ModelCard, validate_sections

__all__ = [
    "SECTION_TITLES",
    "HumanSections",
    "ModelCard",
    "build_card",
    "card_from_records",
    "validate_sections",
]
