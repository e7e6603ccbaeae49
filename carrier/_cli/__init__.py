"""The ``carrier`` command line: the cyclopts app, one module per command family, and table
formatting. Each command imports what it needs when it runs, so ``--help`` and ``ps`` stay cheap.

Imports: every layer below. Never ``_library``.
"""
