"""The ``aiorecords`` console script, driven in a subprocess as a user would."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiorecords import Archive, CaptureFile, RecordsWriter

SCRIPT = shutil.which("aiorecords", path=os.path.dirname(sys.executable))


def aiorecords(
    *args: str, cwd: Path, check_status: int | None = 0
) -> subprocess.CompletedProcess[bytes]:
    assert SCRIPT is not None, "the console script is not installed"
    done = subprocess.run(
        [SCRIPT, *args], cwd=cwd, capture_output=True, timeout=120, check=False
    )
    if check_status is not None:
        assert done.returncode == check_status, done.stderr.decode()
    return done


async def make_capture(path: Path, n: int = 25, compression: str = "zstd") -> None:
    cf = CaptureFile(
        str(path),
        to_write=True,
        force_new_empty_file=True,
        encoding=None,
        compression=compression,  # type: ignore[arg-type]
    )
    await cf.open(to_write=True)
    for i in range(n):
        await cf.add_record(f"event {i}".encode())
    await cf.set_metadata(b"the metadata")
    await cf.commit()
    await cf.close()


async def make_log(path: Path, n: int = 25) -> None:
    async with RecordsWriter(str(path)) as writer:
        for i in range(n):
            await writer.write(f"rec {i}")


async def make_archive(path: Path, names: list[str]) -> None:
    async with Archive.open(str(path), mode="rdwr") as archive:
        for n, name in enumerate(names):
            async with archive.append(name, timestamp=n, compression="gzip") as out:
                await out.write(f"data of {name}".encode())


@pytest.fixture
async def files(tmp_path: Path) -> Path:
    await make_capture(tmp_path / "c.capture")
    await make_capture(tmp_path / "v2.capture", compression="zlib")
    await make_log(tmp_path / "r.log")
    await make_archive(tmp_path / "a.gar", ["index.html", "css/site.css"])
    return tmp_path


def test_python_dash_m_is_the_same_command(files: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aiorecords", "--help"], capture_output=True, check=True
    )
    assert b"info" in done.stdout
    assert b"verify" in done.stdout


@pytest.mark.parametrize(
    ("name", "fmt", "count_key", "count"),
    [
        ("c.capture", "capture", "records", 25),
        ("v2.capture", "capture", "records", 25),
        ("r.log", "records", "records", 25),
        ("a.gar", "archive", "entries", 2),
    ],
)
def test_info_detects_the_format(
    files: Path, name: str, fmt: str, count_key: str, count: int
) -> None:
    facts = json.loads(aiorecords("info", name, "--json", cwd=files).stdout)
    assert facts["format"] == fmt
    assert facts[count_key] == count
    assert facts["size_on_disk"] == (files / name).stat().st_size
    assert facts.get("version") == {
        "capture": 2 if name == "v2.capture" else 1,
        "archive": 2,
    }.get(fmt)
    if fmt == "capture":
        assert facts["metadata"] == "the metadata"
        assert facts["layout"] == (
            "capture v2" if name == "v2.capture" else "aiorecords capture"
        )


def test_info_prints_a_table(files: Path) -> None:
    out = aiorecords("info", "c.capture", cwd=files).stdout.decode()
    assert "aiorecords capture" in out
    assert "the metadata" in out


def test_cat_in_every_rendering(files: Path) -> None:
    text = aiorecords("cat", "c.capture", "--from", "3", "--to", "5", cwd=files).stdout
    assert text == b"event 2\nevent 3\nevent 4\n"
    lines = aiorecords("cat", "r.log", "--as", "json", cwd=files).stdout.splitlines()
    assert [json.loads(line) for line in lines] == [f"rec {i}" for i in range(25)]
    hexed = aiorecords("cat", "a.gar", "--as", "hex", cwd=files).stdout.split()
    assert [bytes.fromhex(h.decode()) for h in hexed] == [
        b"data of index.html",
        b"data of css/site.css",
    ]
    raw = aiorecords("cat", "r.log", "--as", "raw", "--to", "2", cwd=files).stdout
    assert raw == struct.pack(">I", 5) + b"rec 0" + struct.pack(">I", 5) + b"rec 1"


def test_cat_into_head_ends_quietly(tmp_path: Path) -> None:
    import asyncio

    asyncio.run(make_log(tmp_path / "big.log", 200_000))
    done = subprocess.run(
        f"{SCRIPT} cat big.log | head -n 2",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.stdout == b"rec 0\nrec 1\n"
    assert done.stderr == b""


def test_tail_shows_the_last_records(files: Path) -> None:
    for name, prefix in (
        ("c.capture", b"event"),
        ("r.log", b"rec"),
        ("a.gar", b"data"),
    ):
        out = aiorecords("tail", "-n", "2", name, cwd=files).stdout.splitlines()
        assert len(out) == 2
        assert all(line.startswith(prefix) for line in out)
    assert aiorecords("tail", "-n", "1", "r.log", cwd=files).stdout == b"rec 24\n"


def test_tail_n_shows_the_last_n_or_all_there_are(tmp_path: Path) -> None:
    """`tail -n N` for every N from 0 to past the count, every format: the
    last min(N, count) records, in order. (An archive of 5 entries showed 2
    for -n 7: a negative slice start.)"""
    import asyncio

    names = [f"n{i}" for i in range(5)]
    asyncio.run(make_capture(tmp_path / "c.capture", 5))
    asyncio.run(make_log(tmp_path / "r.log", 5))
    asyncio.run(make_archive(tmp_path / "a.gar", names))
    for name in ("c.capture", "r.log", "a.gar"):
        every = aiorecords("cat", name, cwd=tmp_path).stdout.splitlines()
        assert len(every) == 5
        for n in range(12):
            done = aiorecords("tail", "-n", str(n), name, cwd=tmp_path)
            assert done.stdout.splitlines() == every[len(every) - min(n, 5) :], n


@pytest.mark.parametrize("name", ["c.capture", "r.log", "a.gar"])
def test_verify_a_clean_file(files: Path, name: str) -> None:
    out = aiorecords("verify", name, cwd=files).stdout.decode()
    assert ": ok:" in out


def test_verify_reports_damage_with_status_1(tmp_path: Path) -> None:
    import asyncio

    asyncio.run(make_log(tmp_path / "r.log", 5000))
    data = bytearray((tmp_path / "r.log").read_bytes())
    data[40_000] ^= 0x10
    (tmp_path / "r.log").write_bytes(bytes(data))
    done = aiorecords("verify", "r.log", cwd=tmp_path, check_status=1)
    out = done.stdout.decode()
    # The damaged record and the rest of its block are dropped.
    assert "damaged: offset 39997, 25539 bytes: checksum mismatch" in out
    assert "r.log: damaged:" in out

    asyncio.run(make_archive(tmp_path / "a.gar", ["one", "two"]))
    archive = bytearray((tmp_path / "a.gar").read_bytes())
    at = archive.index(b"data of one"[:4]) if b"data of one" in archive else 60
    archive[at + 70] ^= 0x01
    (tmp_path / "a.gar").write_bytes(bytes(archive))
    aiorecords("verify", "a.gar", cwd=tmp_path, check_status=1)


def test_cat_tail_and_convert_of_a_damaged_log_write_the_rest_with_status_1(
    tmp_path: Path,
) -> None:
    """A script piping `cat` or `tail` (or relying on `convert`) learns that records
    were lost: every readable record is written, the damage is reported on
    standard error, and the exit status is 1, not 0."""
    import asyncio

    asyncio.run(make_log(tmp_path / "r.log", 5000))
    clean = aiorecords("cat", "r.log", cwd=tmp_path).stdout.splitlines()
    data = bytearray((tmp_path / "r.log").read_bytes())
    data[40_000] ^= 0x10
    (tmp_path / "r.log").write_bytes(bytes(data))
    done = aiorecords("cat", "r.log", cwd=tmp_path, check_status=1)
    kept = done.stdout.splitlines()
    assert 0 < len(kept) < len(clean)
    assert set(kept) <= set(clean)
    assert b"dropped 25539 bytes at offset 39997" in done.stderr
    # tail: the last records after the damage are all readable, and shown,
    # but the status says that some before them were lost.
    done = aiorecords("tail", "-n", "3", "r.log", cwd=tmp_path, check_status=1)
    assert done.stdout.splitlines() == clean[-3:]
    assert b"dropped 25539 bytes at offset 39997" in done.stderr
    done = aiorecords("tail", "-n", "0", "r.log", cwd=tmp_path, check_status=1)
    assert done.stdout == b""
    done = aiorecords(
        "convert", "--to", "records", "r.log", "copy.log", cwd=tmp_path, check_status=1
    )
    assert f"copy.log: wrote {len(kept)} records".encode() in done.stderr
    assert b"2 damaged region(s), 25545 bytes, not converted" in done.stderr
    copied = aiorecords("cat", "copy.log", cwd=tmp_path).stdout.splitlines()
    assert copied == kept


def test_a_log_ending_in_a_torn_record_is_not_called_whole(tmp_path: Path) -> None:
    """LevelDB's reader passes over a record the file ends in the middle of
    without a word; the commands do not: verify, info, cat, tail and
    convert report it (offset and length, like any damage) and exit 1.
    Bytes that are not a log at all, read as one, are no clean empty log."""
    import asyncio

    asyncio.run(make_log(tmp_path / "r.log", 5000))
    clean = aiorecords("cat", "r.log", cwd=tmp_path).stdout.splitlines()
    data = (tmp_path / "r.log").read_bytes()
    (tmp_path / "cut.log").write_bytes(data[:40_000])  # in record 3,634's bytes
    kept = aiorecords("cat", "cut.log", cwd=tmp_path, check_status=1)
    assert kept.stdout.splitlines() == clean[: len(kept.stdout.splitlines())]
    torn = kept.stderr.decode()
    assert "cut.log: dropped " in torn
    assert ": torn record at the end" in torn
    done = aiorecords("verify", "cut.log", cwd=tmp_path, check_status=1)
    assert b"torn record at the end" in done.stdout
    assert b"cut.log: damaged: " in done.stdout
    aiorecords("info", "cut.log", cwd=tmp_path, check_status=1)
    done = aiorecords("tail", "-n", "1", "cut.log", cwd=tmp_path, check_status=1)
    assert done.stdout.splitlines() == kept.stdout.splitlines()[-1:]
    aiorecords(
        "convert",
        "--to",
        "records",
        "cut.log",
        "copy.log",
        cwd=tmp_path,
        check_status=1,
    )
    copied = aiorecords("cat", "copy.log", cwd=tmp_path).stdout
    assert copied == kept.stdout
    # Junk read as a log: all of it is one torn "record".
    (tmp_path / "junk.bin").write_bytes(b"\xab" * 5000)
    done = aiorecords(
        "verify", "--format", "records", "junk.bin", cwd=tmp_path, check_status=1
    )
    assert b"junk.bin: damaged: offset 0, 5000 bytes: torn record at the end" in (
        done.stdout
    )
    # The whole log, padded to its block's end by its writer, is whole.
    assert (
        b"r.log: ok: 5000 records" in aiorecords("verify", "r.log", cwd=tmp_path).stdout
    )


def test_verify_an_unusable_file_is_status_2(tmp_path: Path) -> None:
    (tmp_path / "junk.bin").write_bytes(b"not a record file at all")
    done = aiorecords("verify", "junk.bin", cwd=tmp_path, check_status=2)
    assert done.stderr.decode().count("\n") == 1  # one line
    assert b"junk.bin" in done.stderr
    assert b"Traceback" not in done.stderr


def test_errors_are_one_line_unless_debug(tmp_path: Path) -> None:
    done = aiorecords("info", "missing.capture", cwd=tmp_path, check_status=2)
    assert done.stderr == b"aiorecords: missing.capture: No such file or directory\n"
    (tmp_path / "bad.capture").write_bytes(b"MioCapture\0" + bytes(100))
    done = aiorecords("info", "bad.capture", cwd=tmp_path, check_status=2)
    assert done.stderr.startswith(b"aiorecords: ")
    assert b"bad.capture" in done.stderr
    assert b"Traceback" not in done.stderr
    done = aiorecords("--debug", "info", "bad.capture", cwd=tmp_path, check_status=None)
    assert done.returncode != 0
    assert b"Traceback" in done.stderr


@pytest.mark.parametrize("source", ["c.capture", "r.log", "a.gar"])
@pytest.mark.parametrize("to", ["capture", "records", "archive"])
def test_convert_between_every_pair(files: Path, source: str, to: str) -> None:
    destination = f"out-{to}"
    aiorecords("convert", source, destination, "--to", to, cwd=files)
    before = aiorecords("cat", source, "--as", "json", cwd=files).stdout
    after = aiorecords("cat", destination, "--as", "json", cwd=files).stdout
    assert before == after
    again = aiorecords(
        "convert", source, destination, "--to", to, cwd=files, check_status=2
    )
    assert b"--force" in again.stderr


def test_convert_rewrites_a_version_1_archive_in_version_2(tmp_path: Path) -> None:
    from aiorecords.archive._format import V1, V2, check_file_header
    from tests.archive.build import Element, archive_bytes

    elements = [
        Element("a", b"first", comment="one", timestamp=-5),
        Element("b", b"\xe5\x01Gt" * 100, compression="gzip", timestamp=7),
        Element("a", b"second", compression="zstd", comment="two"),
    ]
    (tmp_path / "old.gar").write_bytes(archive_bytes(*elements, layout=V1))
    aiorecords("convert", "old.gar", "new.gar", "--to", "archive", cwd=tmp_path)
    assert check_file_header((tmp_path / "new.gar").read_bytes()) is V2
    old, new = (
        json.loads(aiorecords("ls", "--all", "--json", name, cwd=tmp_path).stdout)
        for name in ("old.gar", "new.gar")
    )
    keep = ("name", "timestamp", "size", "compression", "comment")
    assert [{k: e[k] for k in keep} for e in new] == [
        {k: e[k] for k in keep} for e in old
    ]
    assert len(new) == 3
    aiorecords("extract", "new.gar", "-C", "out", cwd=tmp_path)
    assert (tmp_path / "out" / "a").read_bytes() == b"second"
    assert (tmp_path / "out" / "b").read_bytes() == b"\xe5\x01Gt" * 100


def test_convert_to_a_capturefile_1_2_0_file(files: Path) -> None:
    from CaptureFile import CaptureFile as PeerCaptureFile

    aiorecords(
        "convert",
        "r.log",
        "peer.capture",
        "--to",
        "capture",
        "--compression",
        "zlib",
        cwd=files,
    )
    peer = PeerCaptureFile(str(files / "peer.capture"))
    try:
        assert list(peer) == [f"rec {i}" for i in range(25)]
    finally:
        peer.close()


def test_ls_and_extract(files: Path) -> None:
    listing = json.loads(aiorecords("ls", "a.gar", "--json", cwd=files).stdout)
    assert [e["name"] for e in listing] == ["css/site.css", "index.html"]
    assert "index.html" in aiorecords("ls", "a.gar", cwd=files).stdout.decode()
    aiorecords("extract", "a.gar", "-C", "out", cwd=files)
    assert (files / "out/index.html").read_bytes() == b"data of index.html"
    assert (files / "out/css/site.css").read_bytes() == b"data of css/site.css"
    done = aiorecords(
        "extract", "a.gar", "index.html", "-C", "out", cwd=files, check_status=2
    )
    assert b"--force" in done.stderr
    aiorecords("extract", "a.gar", "index.html", "-C", "out", "--force", cwd=files)


@pytest.mark.parametrize(
    "name", ["../escape", "/etc/passwd-copy", "a/../../b", "a\\b", "c:x"]
)
def test_extract_refuses_names_that_leave_the_directory(
    tmp_path: Path, name: str
) -> None:
    import asyncio

    asyncio.run(make_archive(tmp_path / "evil.gar", ["fine", name]))
    (tmp_path / "out").mkdir()
    done = aiorecords("extract", "evil.gar", "-C", "out", cwd=tmp_path, check_status=2)
    assert b"refusing entry name" in done.stderr
    assert list((tmp_path / "out").iterdir()) == []  # checked before writing any
    assert not (tmp_path / "escape").exists()


def test_extract_never_follows_a_link_out(tmp_path: Path) -> None:
    import asyncio

    asyncio.run(make_archive(tmp_path / "a.gar", ["link/file", "plain"]))
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "out" / "plain").symlink_to(tmp_path / "elsewhere" / "target")
    done = aiorecords(
        "extract", "a.gar", "link/file", "-C", "out", cwd=tmp_path, check_status=2
    )
    assert b"outside" in done.stderr
    # With --force, a link where the file goes is replaced, never followed.
    aiorecords("extract", "a.gar", "plain", "-C", "out", "--force", cwd=tmp_path)
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert not (tmp_path / "out" / "plain").is_symlink()
    assert (tmp_path / "out" / "plain").is_file()


def test_tail_follow_in_a_terminal(tmp_path: Path) -> None:
    """``tail -f`` on a pseudo-terminal: the last records, then records as
    another writer commits them; Ctrl-C ends it with no traceback."""
    import asyncio

    path = tmp_path / "live.capture"
    asyncio.run(make_capture(path, n=3))
    controller, terminal = pty.openpty()
    # A shell gives its foreground job Ctrl-C at the default action; a test
    # runner started in the background (``pytest &``, nohup) ignores SIGINT,
    # and an ignored signal is inherited across exec, so the command would
    # rightly ignore it too. Reset it, as the shell would, before exec.
    foreground = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL);"
        " os.execv(sys.argv[1], sys.argv[1:])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", foreground, SCRIPT, "tail", "-f", "-n", "2", str(path)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    seen = b""

    def read_until(wanted: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while wanted not in seen:
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([controller], [], [], 1)
            if ready:
                seen += os.read(controller, 4096)

    try:
        read_until(b"event 2")
        assert b"event 0" not in seen

        async def append() -> None:
            cf = await CaptureFile(str(path), to_write=True)
            await cf.add_record("new one")
            await cf.commit()
            await cf.close()

        asyncio.run(append())
        read_until(b"new one")
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        # Keep reading the terminal while the process ends: output it writes
        # meanwhile must not block it on a full terminal, and is checked.
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if select.select([controller], [], [], 0.1)[0]:
                    seen += os.read(controller, 4096)
            except OSError:
                break  # the terminal closed with the process
        assert process.wait(timeout=5) == 130, seen[-2000:]
        try:
            while select.select([controller], [], [], 0.5)[0]:
                seen += os.read(controller, 4096)
        except OSError:
            pass  # the terminal closed with the process
        assert b"Traceback" not in seen
        assert seen.count(b"new one") == 1, seen[-2000:]  # each record once
        assert b"event 0" not in seen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)


@pytest.mark.parametrize("name", ["c.capture", "r.log", "a.gar"])
@pytest.mark.parametrize("how", ["same name", "symbolic link", "hard link"])
def test_convert_into_its_own_source_is_refused(
    files: Path, name: str, how: str
) -> None:
    """Issue 13, item 5: ``convert F F --force`` emptied F and exited 0."""
    before = (files / name).read_bytes()
    destination = name
    if how == "symbolic link":
        destination = "link"
        os.symlink(name, files / destination)
    elif how == "hard link":
        destination = "hard"
        os.link(files / name, files / destination)
    done = aiorecords(
        "convert",
        name,
        destination,
        "--to",
        "records",
        "--force",
        cwd=files,
        check_status=2,
    )
    assert b"itself" in done.stderr
    assert (files / name).read_bytes() == before


def test_convert_with_force_replaces_the_destination_whole(files: Path) -> None:
    """--force replaces: an archive destination is not appended to, and a
    failed conversion leaves the old destination as it was."""
    aiorecords("convert", "r.log", "out.gar", "--to", "archive", cwd=files)
    aiorecords(
        "convert", "c.capture", "out.gar", "--to", "archive", "--force", cwd=files
    )
    listing = json.loads(aiorecords("ls", "out.gar", "--json", cwd=files).stdout)
    assert len(listing) == 25
    before = (files / "out.gar").read_bytes()
    (files / "broken.capture").write_bytes(b"MioCapture\0" + bytes(100))
    aiorecords(
        "convert",
        "broken.capture",
        "out.gar",
        "--to",
        "archive",
        "--force",
        "--format",
        "capture",
        cwd=files,
        check_status=2,
    )
    assert (files / "out.gar").read_bytes() == before
    assert [p.name for p in files.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("source", ["c.capture", "v2.capture", "peer.capture"])
@pytest.mark.parametrize("compression", ["zstd", "zlib"])
def test_convert_carries_capture_metadata(
    files: Path, source: str, compression: str
) -> None:
    """Issue 13, item 7: capture to capture kept the records, not the
    metadata (CaptureFile 1.2.0 files included, both ways)."""
    from CaptureFile import CaptureFile as PeerCaptureFile

    if source == "peer.capture":
        peer = PeerCaptureFile(str(files / source), to_write=True)
        peer.add_record("from the peer")
        peer.set_metadata(b"peer metadata")
        peer.commit()
        peer.close()
    aiorecords(
        "convert",
        source,
        "out.capture",
        "--to",
        "capture",
        "--compression",
        compression,
        cwd=files,
    )
    facts = json.loads(aiorecords("info", "out.capture", "--json", cwd=files).stdout)
    expected = "peer metadata" if source == "peer.capture" else "the metadata"
    assert facts["metadata"] == expected
    if compression == "zlib":
        peer = PeerCaptureFile(str(files / "out.capture"))
        try:
            assert peer.get_metadata() == expected.encode()
        finally:
            peer.close()


def test_convert_says_when_metadata_has_nowhere_to_go(files: Path) -> None:
    done = aiorecords("convert", "c.capture", "out.log", "--to", "records", cwd=files)
    assert b"metadata" in done.stderr
    assert b"not carried over" in done.stderr


HIDE = "import sys\nfor name in {names}: sys.modules[name] = None\n"


@pytest.mark.parametrize("hidden", [["click"], ["rich"], ["click", "rich"]])
def test_without_the_cli_extra_the_script_says_what_to_install(hidden) -> None:
    code = HIDE.format(names=hidden) + (
        "from aiorecords._command import main\nmain(['info', 'x'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"aiorecords: the command line needs {' and '.join(hidden)}, which come "
        "with its extra: pip install 'aiorecords[cli]'"
    ]


def test_the_library_works_without_the_cli_extra(tmp_path: Path) -> None:
    code = HIDE.format(names=["click", "rich", "anyio", "aiofiles"]) + (
        "import asyncio, aiorecords\n"
        "async def main():\n"
        f"    path = {str(tmp_path / 'x.capture')!r}\n"
        "    async with aiorecords.CaptureFile(path, to_write=True) as cf:\n"
        "        await cf.add_record('one')\n"
        "        await cf.commit()\n"
        "    cf = await aiorecords.CaptureFile(path)\n"
        "    print(await cf.record_at(1))\n"
        "    await cf.close()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=True
    )
    assert done.stdout == b"one\n"


def test_ls_shows_every_timestamp_as_one_at_a_time_would() -> None:
    """ls makes each minute's text once; the text is _when()'s for any
    64-bit timestamp, the ends of what datetime can show among them."""
    import random

    from aiorecords._cli import _Moments, _when

    rng = random.Random(18)
    first, last = -62135596800, 253402300799  # 0001-01-01, 9999-12-31 23:59:59
    edges = [first - 1, first, first + 59, last - 59, last, last + 1, -1, 0, 59, 60]
    values = edges + [rng.randint(-(2**63), 2**63 - 1) for _ in range(2000)]
    values += [rng.randint(first - 1000, last + 1000) for _ in range(20000)]
    values += [
        1_700_000_000 + rng.randrange(600) for _ in range(2000)
    ]  # shared minutes
    moments = _Moments()
    assert [moments.iso(value) for value in values] == [_when(v) for v in values]
