from pathlib import Path

from kkt_adapter.config_doc import render_reference
from kkt_adapter.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_in_the_reference() -> None:
    reference = render_reference()
    for name in Settings.model_fields:
        assert f"`KKT_{name.upper()}`" in reference


def test_the_committed_reference_is_up_to_date() -> None:
    # Regenerate with: kkt-adapter config-reference > docs/configuration.md
    assert DOC.read_text(encoding="utf-8") == render_reference()
