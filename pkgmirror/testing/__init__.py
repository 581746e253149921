"""
Test tooling that end-to-end tests and the benchmark share. None of it imports pkgmirror's
server code, so it can test any index server.

- ``dists``: build real, installable wheels and sdists in milliseconds, without setuptools.
- ``upstream``: a stand-alone upstream simple index (PEP 503/691/658) with switchable faults,
  run as ``python -m pkgmirror.testing.upstream``.
- ``processes``: ``UpstreamProcess`` to run and steer that server, plus ``free_port``,
  ``wait_for_port``, ``clean_client_env`` and ``stop_process``.
"""
