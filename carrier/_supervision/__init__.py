"""Supervision: a container's group (its members, the shielded cleanup), restart policies,
health checks, readiness conditions, lifecycle events, the control socket and reconcile, turning
an image and options into a container, and declared trees.

Imports: every layer below (``_util`` up to ``_runtime``).
"""
