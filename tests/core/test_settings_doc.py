"""docs/configuration.md lists every setting, and its generated tables are current."""

from __future__ import annotations

import typing

from quarry.core.settings import Settings
from quarry.core.settings_doc import DOC, rewrite


def test_every_setting_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [
        f"{section}.{name}"
        for section, model in typing.get_type_hints(Settings).items()
        if hasattr(model, "model_fields")
        for name in model.model_fields
        if f"`{name}`" not in text
    ]
    assert not missing, f"not in {DOC.name}: {missing}"


def test_generated_tables_are_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert rewrite(text) == text, "run `python -m quarry.core.settings_doc`"
