"""
A release's long description as safe HTML. readme_renderer does the rendering and the
sanitising (it is what the public index uses); without it the text is shown as it is.
"""

from __future__ import annotations

import warnings

from pkgmirror.pages.layout import MAX_DESCRIPTION, clip, esc


def render_description(text: str | None, content_type: str | None = None) -> str:
    """
    Safe HTML for a description of the given ``Description-Content-Type``. Blocking for big
    inputs (docutils is slow): call it off the reactor thread.
    """
    if not text or not text.strip():
        return ""
    truncated = len(text) > MAX_DESCRIPTION
    text = clip(text, MAX_DESCRIPTION)
    rendered = _render(text, (content_type or "").lower())
    if rendered is None:
        rendered = f"<pre>{esc(text, MAX_DESCRIPTION)}</pre>"
    if truncated:
        rendered += "<p class=muted>The description is longer than this page shows.</p>"
    return rendered


def _render(text: str, content_type: str) -> str | None:
    try:
        from readme_renderer import markdown, rst
    except ImportError:
        return None
    kind, _, params = content_type.partition(";")
    kind = kind.strip()
    with warnings.catch_warnings():
        # readme_renderer warns when its Markdown extra is missing; the fallback covers it.
        warnings.simplefilter("ignore")
        try:
            if kind == "text/markdown":
                variant = "GFM"
                for param in params.split(";"):
                    name, _, value = param.partition("=")
                    if name.strip().lower() == "variant" and value.strip():
                        variant = value.strip()
                result = markdown.render(text, variant=variant)
            elif kind in ("", "text/x-rst"):
                result = rst.render(text)
            else:
                return None
        except Exception:
            # A renderer bug on hostile input must not cost the page: show the text instead.
            return None
    return str(result) if result is not None else None
