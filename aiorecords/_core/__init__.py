"""Sans-IO format cores.

Everything under this package is pure code over bytes and offsets: encoding
and decoding of each format's structures, and the state machines of its
writers. Nothing here opens a file, awaits, or imports `asyncio` or
`os` (``tests/test_architecture.py`` walks the imports to keep it so).
The async layers in `aiorecords.capture` and friends do the I/O, through
`aiorecords._io`.
"""
