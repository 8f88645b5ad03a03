"""Atomic file output for reports and plots (the helper lives in `gamer_hf.files`)."""

from ..files import atomic_output

__all__ = ["atomic_output"]
