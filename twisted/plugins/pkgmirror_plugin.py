"""
The ``pkgmirror`` twistd subcommand. Lazy: nothing of pkgmirror is imported until it runs.
"""

from twisted.application.service import ServiceMaker

pkgmirror = ServiceMaker(
    "pkgmirror",
    "pkgmirror.tap",
    "A Python package index: caching mirrors and stage indexes, devpi-compatible.",
    "pkgmirror",
)
