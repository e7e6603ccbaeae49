"""Foundations that every layer may import: errors, atomic files and locks, durations, child
processes waited on by pidfd, logging, inotify waits, file-tree removal, and the layout of the
Carrier root.

Imports: nothing else of Carrier.
"""
