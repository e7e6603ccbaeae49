"""Kubernetes: containers and supervision trees written as Kubernetes manifests.

Sits above ``_supervision`` (it reads container records and tree files) and below the CLI.
Nothing here starts a container.
"""
