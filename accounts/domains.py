"""Site domain names: one canonical form, and look-alikes.

A site's domain is stored in one form: NFKC-normalised, lower case, IDNA
(punycode ``xn--`` labels, UTS 46 non-transitional as browsers resolve them),
with no scheme, path, port or trailing dot. The collector looks an event's
domain up under the same form (``lookup_name``), so ``A-Site.test`` and the
Unicode spelling of an IDNA domain find the stored site.

Look-alikes: a label may not mix scripts (Latin with Cyrillic or Greek, say),
except Latin with the scripts written beside it (Han with kana, Hangul or
Bopomofo). ``skeleton`` maps letters that render like Latin ones (Cyrillic
U+0435 for ``e``, Greek U+03BF for ``o``, …) to them, so two domains that read
alike compare equal.
Python has no Unicode script property nor UTS 39's confusables table, so the
script is taken from the character's name and the table below holds the common
Latin look-alikes only: a subset of UTS 39, not all of it.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import idna

# Scripts that may share a label (UTS 39 "highly restrictive").
_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_SCRIPT_ALIASES = {"CJK": "HAN", "KATAKANA-HIRAGANA": "KATAKANA"}

# Lower-case letters of other scripts (and Latin letters beyond ASCII) that render like ASCII ones,
# written as escapes so that the source shows which is which.
# fmt: off
_LOOKALIKES = str.maketrans({
    # Cyrillic
    "\u0430": "a", "\u0432": "b", "\u0501": "d", "\u0435": "e", "\u04bb": "h", "\u0456": "i",
    "\u0458": "j", "\u043a": "k", "\u04cf": "l", "\u043c": "m", "\u043f": "n", "\u043e": "o",
    "\u0440": "p", "\u051b": "q", "\u0433": "r", "\u0455": "s", "\u0442": "t", "\u0475": "v",
    "\u051d": "w", "\u0445": "x", "\u0443": "y", "\u04af": "y", "\u0441": "c", "\u044c": "b",
    # Greek
    "\u03b1": "a", "\u03b5": "e", "\u03b7": "n", "\u03b9": "i", "\u03ba": "k", "\u03bd": "v",
    "\u03bf": "o", "\u03c1": "p", "\u03c4": "t", "\u03c5": "u", "\u03c7": "x", "\u03b3": "y",
    "\u03f2": "c", "\u03f3": "j", "\u03c9": "w",
    # Armenian
    "\u0581": "g", "\u0570": "h", "\u0578": "n", "\u0585": "o", "\u0566": "q", "\u057d": "u",
    # Latin beyond ASCII
    "\u0131": "i", "\u0251": "a", "\u0261": "g", "\u0269": "i", "\u0280": "r", "\u1d0f": "o",
})
# fmt: on


class DomainError(ValueError):
    """The text is not a domain a site may have; the message says why."""


def _script(char: str) -> str | None:
    """The script of a letter, from its Unicode name; None for digits, hyphens and marks."""
    if not unicodedata.category(char).startswith("L"):
        return None
    word = unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]
    return _SCRIPT_ALIASES.get(word, word)


def check_scripts(label: str) -> None:
    """``DomainError`` if the Unicode ``label`` mixes scripts that no language writes together."""
    scripts = {script for char in label if (script := _script(char)) is not None}
    if len(scripts) <= 1 or any(scripts <= allowed for allowed in _SCRIPT_MIXES):
        return
    names = " and ".join(sorted(script.title() for script in scripts))
    # The label reads like a plain one, so name the letters that are not what they seem.
    odd = [
        f"U+{ord(c):04X} {unicodedata.name(c, '?')}" for c in dict.fromkeys(label) if _script(c) not in {None, "LATIN"}
    ]
    shown = f" ({', '.join(odd[:3])})" if "LATIN" in scripts else ""
    raise DomainError(f"{label!r} mixes {names} letters{shown}; a label must keep to one script")


def _unicode_label(label: str) -> str:
    return idna.ulabel(label) if label.startswith("xn--") else label


def to_unicode(domain: str) -> str:
    """The readable form of a stored domain (its ``xn--`` labels decoded)."""
    try:
        return ".".join(_unicode_label(label) for label in domain.split("."))
    except idna.IDNAError:
        return domain


def skeleton(domain: str) -> str:
    """What ``domain`` looks like on screen: look-alike letters replaced by the ASCII ones."""
    return to_unicode(domain).translate(_LOOKALIKES)


def normalise_host(raw_host: str) -> str:
    """The stored form of a host name (already lower-cased and NFKC-normalised), or ``DomainError``.

    ASCII labels are kept as they are (IDNA 2008 would refuse hyphens in the
    third and fourth place, which real host names use); others become ``xn--``
    labels after a check of their scripts.
    """
    try:
        mapped = idna.uts46_remap(raw_host, std3_rules=True, transitional=False)
    except idna.IDNAError as error:
        raise DomainError(f"{raw_host!r} is not a valid host name: {error}") from None
    labels = []
    for label in mapped.split("."):
        if label.isascii() and not label.startswith("xn--"):
            labels.append(label)
            continue
        try:
            unicode_label = _unicode_label(label)
            check_scripts(unicode_label)
            labels.append(idna.alabel(unicode_label).decode())
        except idna.IDNAError as error:
            raise DomainError(f"{label!r} is not a valid label of a host name: {error}") from None
    return ".".join(labels)


@lru_cache(maxsize=4096)
def _lookup_name_unicode(domain: str) -> str:
    try:
        return idna.encode(domain.rstrip("."), uts46=True, transitional=False).decode()
    except (idna.IDNAError, UnicodeError):
        return domain


def lookup_name(domain: str) -> str:
    """The stored form under which the collector looks up an event's ``domain``.

    ASCII names only lose case and a trailing dot (the common case, no
    allocation beyond that); others are IDNA-encoded once and remembered.
    """
    if domain.isascii():
        return domain.lower().rstrip(".")
    return _lookup_name_unicode(unicodedata.normalize("NFKC", domain).lower())
