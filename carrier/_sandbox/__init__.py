"""The sandbox: the holder process that owns a container's user, network, UTS, IPC (and mount)
namespaces, the id maps that make the invoking user root inside, and entering those namespaces
from outside.

Imports: ``_util``.
"""
