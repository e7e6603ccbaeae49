"""The async library's entry points, re-exported by ``carrier/__init__.py``.

Imports: every layer below. Never ``_cli``.
"""
