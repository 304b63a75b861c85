"""Model cards built from the log: the card model, building it, rendering and exporting it."""

from auditml.cards.build import build_card, card_from_records
from auditml.cards.diff import CardDiff, diff_cards
from auditml.cards.render import FORMATS, render_card
from auditml.core.card import SECTION_TITLES, HumanSections, ModelCard, validate_sections

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
