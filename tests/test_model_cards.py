"""Every bundled checkpoint has a model card (issue 17, part 4; docs/model-cards.md).

Cheap checks on files only: a folder under ``pretrained/`` that holds weights has its ``MODEL_CARD.md``, the
cards table of ``docs/model-cards.md`` links it, and a card names the fingerprint its ``config.json`` records
(so a card carried over to new weights, which ``save_pretrained`` would give a new fingerprint, shows).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from musictok.tokens import Fingerprint

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted(p.parent for p in (ROOT / "pretrained").glob("*/model.safetensors"))


def test_there_are_bundled_checkpoints():
    assert BUNDLED, "no pretrained/*/model.safetensors found"


@pytest.mark.parametrize("folder", BUNDLED, ids=lambda p: p.name)
def test_every_bundled_checkpoint_has_a_card_listed_in_the_docs(folder):
    card = folder / "MODEL_CARD.md"
    assert card.is_file(), f"{folder.name}: no MODEL_CARD.md (docs/model-cards.md says what a card holds)"
    table = (ROOT / "docs" / "model-cards.md").read_text()
    assert f"(../pretrained/{folder.name}/MODEL_CARD.md)" in table, f"{folder.name}: not in docs/model-cards.md"


@pytest.mark.parametrize("folder", BUNDLED, ids=lambda p: p.name)
def test_a_card_names_the_fingerprint_its_config_records(folder):
    recorded = json.loads((folder / "config.json").read_text()).get("fingerprint")
    assert recorded is not None, f"{folder.name}: config.json records no fingerprint (bundle it with one)"
    short = Fingerprint(**recorded).short()
    text = " ".join((folder / "MODEL_CARD.md").read_text().split())  # a fingerprint may wrap across lines
    assert short in text, f"{folder.name}: the card does not name {short}"
