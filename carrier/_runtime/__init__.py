"""The OCI runtime: the bundle (``config.json``), the runc/crun driver, ``exec`` into a running
container, and the terminal of an interactive session.

Imports: every layer below (``_util`` up to ``_network``).
"""
