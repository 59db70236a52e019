"""Archives of named entries ("gar"): the Seqdb_archive API, async.

An archive is a file (or bytes in memory) of elements, each a name, a
timestamp, a comment and a payload, appended one after another and read
from the end, so that of several elements with one name the last one
stored is the one found. [`Archive`][aiorecords.Archive] opens one; its
[`append()`][aiorecords.Archive.append] and [`read()`][aiorecords.Archive.read] stream
an entry's bytes in and out in bounded memory, one worker-thread hop per megabyte (or
per small entry), never one per write.

Appends are crash-safe: an element exists once its trailer is written, the
last thing an append does; a torn element left by a cancelled task or a
killed process is invisible to readers and overwritten by the next append.
The byte layout is in ``docs/formats/archive.md``.
"""

from ._archive import Archive, ArchiveEntry, EntryProperties
from ._entries import EntryReader, EntryWriter

__all__ = ["Archive", "ArchiveEntry", "EntryProperties", "EntryReader", "EntryWriter"]
