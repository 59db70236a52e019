"""``python -m aiorecords``: the command line (see ``aiorecords --help``)."""

from ._cli import main

main()
