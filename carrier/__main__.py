"""``python -m carrier`` runs the command line."""

from ._cli import console

console()
