"""
The simple repository API as pure functions: no Twisted, no I/O.

- :mod:`~pkgmirror.simple.negotiate`: which format a request gets (PEP 691 Accept, ``?format=``).
- :mod:`~pkgmirror.simple.parse`: upstream pages (HTML or JSON) to model values.
- :mod:`~pkgmirror.simple.render`: our pages as bytes, HTML (PEP 503/629/658/714/792) or JSON
  (PEP 691/700).
"""
