"""
The HTML pages people read, rendered from plain values: no Twisted, no I/O.

``layout`` has the frame, the stylesheet and the escaping helpers; one module per kind of page.
The HTTP side (gathering the values, negotiation) is ``pkgmirror.web.pages``.
"""
