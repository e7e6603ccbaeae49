"""``python -m carrier`` runs the command line."""

from ._cli._app import console

console()
