"""Container records: the spec of what to run, the lifecycle, and ``state.json`` per container,
with name reservation and the supervisor lock.

Imports: ``_util``, ``_sandbox`` (removal as the owner of subordinate ids).
"""
