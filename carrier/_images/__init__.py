"""Images: Docker's reference rules, the registry client (pull, auth), archive loading, and the
content-addressed store of configs and unpacked layers.

Imports: ``_util``.
"""
