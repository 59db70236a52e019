"""The API reference as a reader sees it: the site is built, served on
loopback, and the reference page rendered by a real browser (headless
Chromium). The text it shows must hold no literal Sphinx role, every public
name and member, the fields of ArchiveEntry, type annotations in
signatures, and no attribute shown as ``name = name``."""

from __future__ import annotations

import functools
import html
import http.server
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiorecords import errors

ROOT = Path(__file__).parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs Chromium and sets this, so that the check cannot be skipped there.
REQUIRED = os.environ.get("AIORECORDS_REQUIRE_BROWSER") == "1"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED, reason="no Chromium (CI installs it)"
)


@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    pytest.importorskip("mkdocs")
    with tempfile.TemporaryDirectory() as directory:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mkdocs",
                "build",
                "--strict",
                "--site-dir",
                directory,
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            timeout=300,
        )
        yield Path(directory)


@pytest.fixture(scope="module")
def reference_text(site: Path) -> str:
    """The reference page's text, as Chromium renders it."""
    assert CHROMIUM is not None, "Chromium is required here"
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(site)
    )
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/reference/"
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run(
                [
                    CHROMIUM,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={profile}",
                    "--dump-dom",
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    dom = done.stdout
    assert "API reference" in dom, dom[:500]
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def test_no_literal_sphinx_roles(reference_text: str) -> None:
    roles = re.findall(
        r":(?:meth|class|attr|func|mod|exc|data|obj):`[^`]*`", reference_text
    )
    assert roles == []
    assert ".. code-block::" not in reference_text


def public_names() -> list[str]:
    """Every exported name, and the public members of exported classes
    (those they inherit from aiorecords' own classes too), and the names of
    aiorecords.dask."""
    import aiorecords.dask

    names = []
    for name in aiorecords.__all__:
        names.append(name)
        obj = getattr(aiorecords, name)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            own = set()
            for klass in obj.__mro__:
                if klass.__module__.startswith("aiorecords"):
                    own |= set(vars(klass))
            for member, _ in inspect.getmembers(obj):
                if not member.startswith("_") and member in own:
                    names.append(member)
    names += list(errors.__all__)
    names += list(aiorecords.dask.__all__)
    return sorted(set(names))


def test_every_public_name_and_member_is_shown(reference_text: str) -> None:
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", reference_text))
    missing = [name for name in public_names() if name not in words]
    assert missing == []


def test_archive_entry_fields_and_the_record_alias(reference_text: str) -> None:
    start = reference_text.index("aiorecords.ArchiveEntry")
    section = reference_text[start : start + 20_000]
    for field in ("name", "timestamp", "comment", "payload_offset", "payload_crc"):
        assert re.search(rf"\b{field}\b", section), field
    flat = " ".join(reference_text.split())
    assert re.search(r"aiorecords\.Record\b.{0,80}str \| bytes", flat), "Record"


def test_signatures_show_their_annotations(reference_text: str) -> None:
    packed = "".join(reference_text.split())
    assert "max_record_size:int=" in packed
    assert "to_write:bool=" in packed
    assert ")->None" in packed
    assert ")->Record" in packed


def test_attributes_do_not_render_as_their_own_names(reference_text: str) -> None:
    flat = " ".join(reference_text.split())
    names = {name for name in public_names() if not name[0].isupper()}
    shown = [name for name in names if f"{name} = {name}" in flat]
    assert shown == []
