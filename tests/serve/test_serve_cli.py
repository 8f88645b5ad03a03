"""`gamer-hf serve`'s flags default to the service's own settings, so one place sets each default."""

from __future__ import annotations

import dataclasses

from gamer_hf.cli.serve import ServeArguments
from gamer_hf.serve import ModelOptions, ServeSettings


def test_the_flags_default_to_the_service_settings() -> None:
    flags = ServeArguments(model="checkpoint")
    for settings in (ServeSettings(), ModelOptions(model="checkpoint")):
        for field in dataclasses.fields(settings):
            assert getattr(flags, field.name) == getattr(settings, field.name), field.name
