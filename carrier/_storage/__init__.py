"""Storage: a container's root filesystem from its image's layers, by the overlay,
fuse-overlayfs or copy driver.

Imports: ``_util``, ``_images``, ``_sandbox``, ``_state``.
"""
