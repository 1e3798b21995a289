"""Reading app settings one by one, keeping every invalid one so that one look names them all. The app's own
settings (shared.settings) and each target's (``Target.settings``) are read with it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import NamedTuple, TypeVar

from shared.errors import ConfigurationError

T = TypeVar("T")


class Setting(NamedTuple):
    """One app setting a target reads, as the settings table in docs/settings.md shows it."""

    name: str
    default: str
    doc: str


def listed(raw: str) -> list[str]:
    """A list setting's entries: separated by commas, semicolons or white space."""
    return [part for part in re.split(r"[\s,;]+", raw) if part]


class SettingReader:
    """The settings in ``env``; each invalid one is kept in ``problems`` and its fallback used instead."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[ConfigurationError] = []

    def check(self, read: Callable[[], T], fallback: T) -> T:
        try:
            return read()
        except ConfigurationError as exc:
            self.problems.append(exc)
            return fallback

    def text(self, name: str) -> str:
        return self.env.get(name, "").strip()

    def number(self, name: str, *, default: float, low: float, high: float, whole: bool = False) -> float:
        return self.check(lambda: self._number(name, default=default, low=low, high=high, whole=whole), default)

    def _number(self, name: str, *, default: float, low: float, high: float, whole: bool) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = int(raw) if whole else float(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            kind = "a whole number" if whole else "a number"
            raise ConfigurationError(name, f"must be {kind} from {low:g} to {high:g}; got {raw!r}")
        return value
