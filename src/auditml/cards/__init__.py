"""Model cards built from the log: the card model, building it, rendering and exporting it."""

from auditml.cards.build import build_card, card_from_records
from auditml.cards.diff import CardDiff, diff_cards
from auditml.cards.model import SECTION_TITLES, HumanSections, ModelCard, validate_sections
from auditml.cards.render import FORMATS, render_card

__all__ = [
    "FORMATS",
    "SECTION_TITLES",
    "CardDiff",
    "HumanSections",
    "ModelCard",
    "build_card",
    "card_from_records",
    "diff_cards",
    "render_card",
    "validate_sections",
]
