"""Durations written out in words (``5 minutes``), recognised so that the error can say how to write them."""

from __future__ import annotations

#: Unit words people write, and the letter the configuration takes (queue durations) with its length in seconds.
UNIT_WORDS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), ("s", 1)),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), ("m", 60)),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), ("h", 3600)),
    **dict.fromkeys(("day", "days"), ("d", 86400)),
    **dict.fromkeys(("week", "weeks"), ("w", 604800)),
}


def spelled_out(number: str, word: str) -> tuple[str, float] | None:
    """``("5", "minutes")`` → ``("5m", 300.0)``: the one-word form and the seconds, or None if it is no duration."""
    unit = UNIT_WORDS.get(word.strip().lower())
    try:
        value = float(number)
    except ValueError:
        return None
    if unit is None:
        return None
    letter, seconds = unit
    return f"{number.strip()}{letter}", value * seconds


def hint(text: str, *, seconds_only: bool = False) -> str:
    """A hint for a duration written as two words (``"5 minutes"``), else "". ``seconds_only``: the keyword takes
    a number of seconds (``timeout``)."""
    number, _, word = text.strip().partition(" ")
    found = spelled_out(number, word) if word else None
    if found is None:
        return ""
    short, seconds = found
    return f" (write {seconds:g} for {text.strip()})" if seconds_only else f" (write {short}: one word, no space)"
