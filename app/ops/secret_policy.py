"""Which ops secrets are good enough to serve with (issue 13: "secrets worth the name").

The ops surface is served only when SECRET_KEY, ADMIN_TOKEN, ADMIN_USER and ADMIN_PASSWORD are
set, and SECRET_KEY, ADMIN_TOKEN and ADMIN_PASSWORD are not weak. A value is weak when it is

1. a placeholder: once lower-cased and stripped of everything but letters and digits, it
   contains "changeme", "changethis", "replaceme" or "yoursecret"/"yourpassword"/"yourtoken",
   or is made only of words such as "secret", "password", "admin", "test" and digits
   (.env.example's `change-me-*` values were served without a word before);
2. short: fewer than 32 characters for SECRET_KEY and ADMIN_TOKEN (machine secrets: generate
   them, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), fewer than 16
   for ADMIN_PASSWORD (a person types it);
3. easy to guess: zxcvbn (Dropbox's estimator: dictionaries, repeats, sequences, keyboard
   patterns, l33t) estimates fewer than 10^20 guesses for a key or token, 10^12 for the
   password. A random 32-character value is near 10^31; `aB3$aB3$…` or `0123…cdef0123…` is
   under 10^5.

ALLOW_WEAK_SECRETS=1 (development only, never inferred) skips the strength rules; missing
secrets are refused whatever it says. Messages name the setting and the rule, never the value
or its length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from zxcvbn import zxcvbn

REQUIRED_SECRETS = ("SECRET_KEY", "ADMIN_TOKEN", "ADMIN_USER", "ADMIN_PASSWORD")
MACHINE_SECRETS = ("SECRET_KEY", "ADMIN_TOKEN")
PASSWORD = "ADMIN_PASSWORD"
MIN_LENGTH = {"SECRET_KEY": 32, "ADMIN_TOKEN": 32, PASSWORD: 16}
MIN_GUESSES_LOG10 = {"SECRET_KEY": 20.0, "ADMIN_TOKEN": 20.0, PASSWORD: 12.0}
ALLOW_WEAK = "ALLOW_WEAK_SECRETS"

_PLACEHOLDER_MARKERS = ("changeme", "changethis", "replaceme", "yoursecret", "yourpassword", "yourtoken")
_PLACEHOLDER_WORDS = re.compile(
    r"(?:secret|password|passwd|pass|admin|token|test|default|example|sample|dummy|key|qwerty|letmein|\d)+"
)
# zxcvbn's own cut-off: longer values are judged on their first 72 characters (its cost grows
# with the length; a value that long and random is far past every floor anyway).
_ZXCVBN_MAX_LENGTH = 72
NOT_SET = "not set"


@dataclass(frozen=True)
class Refusal:
    """One secret the ops surface will not serve with, and why (never its value)."""

    setting: str
    reason: str

    @property
    def missing(self) -> bool:
        return self.reason == NOT_SET

    def __str__(self) -> str:
        return f"{self.setting} {self.reason}"



def is_placeholder(value: str) -> bool:
    """Whether `value` is a stand-in (change-me-…, "password123", "admin"), case-insensitive."""
    compact = re.sub(r"[^a-z0-9]", "", value.lower())
    if any(marker in compact for marker in _PLACEHOLDER_MARKERS):
        return True
    return bool(compact) and _PLACEHOLDER_WORDS.fullmatch(compact) is not None


@lru_cache(maxsize=64)  # called on every ops request; zxcvbn takes a few milliseconds
def weakness(setting: str, value: str, user: str = "") -> str | None:
    """Why `value` is too weak for `setting` (one of MIN_LENGTH's keys), or None when it is good.

    `user` (ADMIN_USER) counts as a known word: a password built from it is easy to guess.
    """
    if is_placeholder(value):
        return "is a placeholder"
    if len(value) < MIN_LENGTH[setting]:
        return f"is too short: at least {MIN_LENGTH[setting]} characters"
    known = [word for word in (user, "cronwork", "ops") if word]
    estimate = zxcvbn(value, user_inputs=known, max_length=_ZXCVBN_MAX_LENGTH)
    if float(estimate["guesses_log10"]) < MIN_GUESSES_LOG10[setting]:
        return "is too easy to guess: repeats, sequences, keyboard patterns or common words"
    return None


def allow_weak(config: Mapping[str, Any]) -> bool:
    """Whether the development switch ALLOW_WEAK_SECRETS is on (a bool, or "1" from a mapping)."""
    flag = config.get(ALLOW_WEAK)
    return flag is True or flag == "1"


def refusals(config: Mapping[str, Any], check_strength: bool | None = None) -> list[Refusal]:
    """Every required secret that is missing, then (unless ALLOW_WEAK_SECRETS) every weak one.

    `check_strength` overrides the switch (the start-up warning asks what it lets through).
    """
    found = [Refusal(key, NOT_SET) for key in REQUIRED_SECRETS if not config.get(key)]
    if check_strength is None:
        check_strength = not allow_weak(config)
    if not check_strength:
        return found
    user = str(config.get("ADMIN_USER") or "")
    for key in (*MACHINE_SECRETS, PASSWORD):
        value = config.get(key)
        if value:
            reason = weakness(key, str(value), user)
            if reason is not None:
                found.append(Refusal(key, reason))
    return found


def describe(found: list[Refusal]) -> str:
    """The refusals as one clause: `SECRET_KEY is too short (…); ADMIN_USER not set`."""
    return "; ".join(str(refusal) for refusal in found)
