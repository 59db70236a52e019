"""``python -m aiorecords``: the command line (see ``aiorecords --help``)."""

from ._command import main

main()
