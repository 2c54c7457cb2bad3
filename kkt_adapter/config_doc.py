"""The configuration reference, generated from the settings model (docs/configuration.md)."""

from __future__ import annotations

from typing import Any

from pydantic.fields import FieldInfo

from kkt_adapter.settings import Settings

HEADER = """\
# Configuration reference

Generated from the settings model by `kkt-adapter config-reference`; do not edit by hand.

Every setting can be given as an environment variable (`KKT_` + its name in capitals), in a
TOML file (`--config FILE` or `KKT_CONFIG_FILE`, keys as in the first column), and some as
flags of `kkt-adapter serve`. Precedence: flag > environment > file > default.

| setting | environment | default | what |
|---|---|---|---|
"""


def _default(field: FieldInfo) -> str:
    value: Any = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if hasattr(value, "get_secret_value"):
        return "(built in)"
    return f"`{value}`"


def render_reference() -> str:
    """The Markdown table of every setting with its variable, default and description."""
    rows = [
        f"| `{name}` | `KKT_{name.upper()}` | {_default(field)} | {field.description or ''} |"
        for name, field in Settings.model_fields.items()
    ]
    return HEADER + "\n".join(rows) + "\n"
