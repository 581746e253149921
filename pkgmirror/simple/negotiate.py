"""
Content negotiation for simple pages (PEP 691) and the devpi JSON API. Pure: no I/O, no Twisted.

How :func:`negotiate` decides (checklist section 4):

- Each of our three formats takes the ``q`` of the *most specific* range that matches it: the exact
  type (``application/vnd.pypi.simple.v1+json``), then its ``latest`` alias, then ``type/*``, then
  ``*/*``. A ``q`` of 0 on that range excludes the format, even if a wider range would allow it.
- The highest ``q`` wins. List order means nothing (RFC 9110).
- Equal ``q``: a format the client *named* beats one it only reached through a wildcard. Among named
  formats the most expressive wins (JSON, then ``v1+html``, then ``text/html``), as PEP 691
  recommends. Among wildcard-only formats HTML wins (``text/html``, then ``v1+html``, then JSON),
  so ``*/*`` or a missing header gives ``text/html`` as warehouse does: browsers and old tools
  that send nothing specific get the format every client understands.
- ``application/json`` is not an alias of any simple format: alone it yields None (406).
- A missing header, an empty one, or one with no parseable entry counts as ``*/*``.
- A valid ``?format=`` value (one of the three types, or a ``latest`` alias) wins over ``Accept``;
  any other value is ignored and ``Accept`` decides.
"""

from __future__ import annotations

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"

JSON_LATEST = "application/vnd.pypi.simple.latest+json"
HTML_LATEST = "application/vnd.pypi.simple.latest+html"

# What a concrete type or its alias names; the value is always one we can send back (C3).
_ALIASES = {
    JSON_V1: JSON_V1,
    HTML_V1: HTML_V1,
    TEXT_HTML: TEXT_HTML,
    JSON_LATEST: JSON_V1,
    HTML_LATEST: HTML_V1,
}

# Tie-break ranks: higher is better.
_NAMED_PREFERENCE = {JSON_V1: 3, HTML_V1: 2, TEXT_HTML: 1}
_WILDCARD_PREFERENCE = {TEXT_HTML: 3, HTML_V1: 2, JSON_V1: 1}

# Specificity of the range that matched a format.
_EXACT, _LATEST, _SUBTYPE_WILDCARD, _ANY = 4, 3, 2, 1

# Bounds against hostile headers: we never look at more than this many entries.
_MAX_ENTRIES = 64
_MAX_HEADER = 8192

MediaRange = tuple[str, dict[str, str], float]


def parse_accept(header: str | None) -> list[MediaRange]:
    """
    The media ranges of an ``Accept`` header as ``(type/subtype, params, q)``, in header order.

    Types and parameter names are lower-cased; ``q`` is a float in [0, 1] (default 1) and is not
    in ``params``; accept-extensions after ``q`` are dropped. Entries that do not parse (no slash,
    ``*/json``, a ``q`` outside [0, 1] or not a number) are skipped. Never raises.
    """
    if not header:
        return []
    ranges: list[MediaRange] = []
    for entry in header[:_MAX_HEADER].split(",")[:_MAX_ENTRIES]:
        parsed = _parse_range(entry)
        if parsed is not None:
            ranges.append(parsed)
    return ranges


def _parse_range(entry: str) -> MediaRange | None:
    parts = entry.split(";")
    media = parts[0].strip().lower()
    maintype, slash, subtype = media.partition("/")
    if (
        not slash
        or not maintype
        or not subtype
        or not _is_token(maintype)
        or not _is_token(subtype)
    ):
        return None
    if maintype == "*" and subtype != "*":
        return None
    params: dict[str, str] = {}
    q = 1.0
    for param in parts[1:]:
        key, eq, value = param.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        value = value.strip().strip('"') if eq else ""
        if key == "q":
            parsed_q = _parse_q(value)
            if parsed_q is None:
                return None
            q = parsed_q
            # Whatever follows q are accept-extensions, not media type parameters.
            break
        params[key] = value
    return media, params, q


def _parse_q(value: str) -> float | None:
    # RFC 9110 allows at most three decimals; be lenient on digits but not on range or syntax.
    if not value or len(value) > 8:
        return None
    try:
        q = float(value)
    except ValueError:
        return None
    if not 0.0 <= q <= 1.0:
        return None
    return q


_TOKEN_EXTRA = frozenset("!#$%&'*+-.^_`|~")


def _is_token(text: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in _TOKEN_EXTRA) for c in text)


def negotiate(accept: str | None, format_param: str | None = None) -> str | None:
    """
    Which simple-page format to answer with: :data:`JSON_V1`, :data:`HTML_V1`, :data:`TEXT_HTML`,
    or None when the client accepts none of them (answer 406). See the module docstring.
    """
    if format_param is not None:
        chosen = _ALIASES.get(format_param.strip().lower())
        if chosen is not None:
            return chosen
    ranges = parse_accept(accept)
    if not ranges:
        ranges = [("*/*", {}, 1.0)]
    best: tuple[float, int, int] | None = None
    best_type: str | None = None
    for candidate in (JSON_V1, HTML_V1, TEXT_HTML):
        q, specificity = _match(candidate, ranges)
        if specificity == 0 or q <= 0.0:
            continue
        named = specificity >= _LATEST
        preference = (_NAMED_PREFERENCE if named else _WILDCARD_PREFERENCE)[candidate]
        key = (q, int(named), preference)
        if best is None or key > best:
            best, best_type = key, candidate
    return best_type


def _match(candidate: str, ranges: list[MediaRange]) -> tuple[float, int]:
    """The q of the most specific range matching ``candidate`` (ties: the higher q), or (0, 0)."""
    maintype = candidate.split("/", 1)[0]
    best_specificity = 0
    best_q = 0.0
    for media, _params, q in ranges:
        if media == candidate:
            specificity = _EXACT
        elif _ALIASES.get(media) == candidate:
            specificity = _LATEST
        elif media == f"{maintype}/*":
            specificity = _SUBTYPE_WILDCARD
        elif media == "*/*":
            specificity = _ANY
        else:
            continue
        if specificity > best_specificity or (specificity == best_specificity and q > best_q):
            best_specificity, best_q = specificity, q
    return best_q, best_specificity


def wants_json_api(accept: str | None) -> bool:
    """
    True when the client asks for the devpi JSON API: ``application/json`` is in ``Accept``
    with a non-zero ``q`` (devpi-client sends exactly ``application/json``).
    """
    return any(media == "application/json" and q > 0 for media, _p, q in parse_accept(accept))
