"""Networking: the helper interface and its pasta and slirp4netns backends (and the choice
between them), netlink readiness, resolv.conf and hosts, published ports and the UDP relay, the
network check and repair on entry, and the machine check (``carrier network check``).

Imports: ``_util``, ``_sandbox``, ``_state``, ``_storage``. pasta and slirp4netns never import
each other.
"""
