"""The command line on URLs: LevelDB logs served over HTTP on loopback and
by a real S3 protocol server, beside the same bytes in a local file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from test_cli import aiorecords, make_capture

from .conftest import S3, Objects
from .test_records_remote import log_bytes, make_records


def log(tmp_path: Path, seed: int = 20) -> tuple[list[bytes], bytes]:
    records = [r[:300] for r in make_records(seed)]
    return records, asyncio.run(log_bytes(tmp_path, records))


def test_cat_info_and_verify_over_http(http_objects: Objects, tmp_path: Path) -> None:
    records, data = log(tmp_path)
    url = http_objects.put("events.log", data)
    local = str(tmp_path / "local.log")
    for command in (["cat", "--as", "hex"], ["verify"]):
        remote = aiorecords(*command, url, cwd=tmp_path).stdout
        here = aiorecords(*command, local, cwd=tmp_path).stdout
        assert remote == here.replace(local.encode(), url.encode())
    facts = json.loads(aiorecords("info", "--json", url, cwd=tmp_path).stdout)
    assert facts["file"] == url
    assert facts["format"] == "records"
    assert facts["records"] == len(records)
    assert facts["size_on_disk"] == len(data)
    tail = aiorecords("tail", "-n", "2", "--as", "hex", url, cwd=tmp_path)
    assert tail.stdout.splitlines() == [r.hex().encode() for r in records[-2:]]


def test_verify_finds_damage_in_an_object(
    http_objects: Objects, tmp_path: Path
) -> None:
    _, data = log(tmp_path, 21)
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 1
    url = http_objects.put("damaged.log", bytes(damaged))
    done = aiorecords("verify", url, cwd=tmp_path, check_status=1)
    assert b"offset" in done.stdout + done.stderr


def test_a_missing_object_names_its_url(http_objects: Objects, tmp_path: Path) -> None:
    url = f"{http_objects.url}/nothing.log"
    done = aiorecords("cat", url, cwd=tmp_path, check_status=2)
    assert url.encode() in done.stderr
    assert b"Traceback" not in done.stderr


def test_capture_commands_over_http_match_the_local_file(
    http_objects: Objects, tmp_path: Path
) -> None:
    path = tmp_path / "c.capture"
    asyncio.run(make_capture(path, n=300))
    url = http_objects.put("c.capture", path.read_bytes())
    for command in (
        ["cat", "--as", "hex"],
        ["info", "--json"],
        ["verify"],
        ["tail", "-n", "3"],
    ):
        remote = aiorecords(*command, url, cwd=tmp_path).stdout
        here = aiorecords(*command, str(path), cwd=tmp_path).stdout
        assert remote == here.replace(str(path).encode(), url.encode()), command
    copy = tmp_path / "copy.log"
    aiorecords("convert", "--to", "records", url, str(copy), cwd=tmp_path)
    assert copy.exists()
    done = aiorecords("tail", "-f", url, cwd=tmp_path, check_status=2)
    assert b"Traceback" not in done.stderr


def test_cat_from_s3_with_storage_options(s3: S3, tmp_path: Path) -> None:
    records, data = log(tmp_path, 22)
    url = s3.put("cli/events.log", data)
    options = []
    for key, value in s3.options.items():
        options += ["-o", f"{key}={json.dumps(value)}"]
    done = aiorecords(*options, "cat", "--as", "hex", url, cwd=tmp_path)
    assert done.stdout.splitlines() == [r.hex().encode() for r in records]
    converted = tmp_path / "copy.log"
    aiorecords(
        *options, "convert", "--to", "records", url, str(converted), cwd=tmp_path
    )
    assert converted.read_bytes() == data


def test_convert_into_s3_for_every_format(s3: S3, tmp_path: Path) -> None:
    # Built locally, uploaded whole: each result reads as the local
    # conversion does; an object there is replaced only with --force.
    records, data = log(tmp_path, 23)
    source = s3.put("from/src.log", data)
    bucket = source.rsplit("/", 2)[0]
    options = []
    for key, value in s3.options.items():
        options += ["-o", f"{key}={json.dumps(value)}"]
    for to in ("records", "capture", "archive"):
        url = f"{bucket}/to/out.{to}"
        aiorecords(*options, "convert", "--to", to, source, url, cwd=tmp_path)
        remote = aiorecords(*options, "cat", "--as", "hex", url, cwd=tmp_path)
        assert remote.stdout.splitlines() == [r.hex().encode() for r in records], to
        done = aiorecords(
            *options, "convert", "--to", to, source, url, cwd=tmp_path, check_status=2
        )
        assert b"exists" in done.stderr
        assert b"Traceback" not in done.stderr
        aiorecords(
            *options, "convert", "--force", "--to", to, source, url, cwd=tmp_path
        )
    assert s3.keys(bucket)["to/out.records"] == data
    assert s3.unfinished_uploads(bucket) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.log"]


def archive_pair(http_objects: Objects, tmp_path: Path) -> tuple[str, Path]:
    from ..archive.build import Element, archive_bytes

    data = archive_bytes(
        Element("notes/a.txt", b"first\n"),
        Element("b.bin", bytes(range(256)) * 50, "zstd"),
        Element("notes/a.txt", b"second\n", "gzip"),
    )
    local = tmp_path / "local.archive"
    local.write_bytes(data)
    return http_objects.put("cli.archive", data), local


def test_archive_commands_over_http_match_the_local_file(
    http_objects: Objects, tmp_path: Path
) -> None:
    url, local = archive_pair(http_objects, tmp_path)
    for command in (
        ["ls", "--json"],
        ["ls", "--all"],
        ["cat", "--as", "hex"],
        ["verify"],
        ["info", "--json"],
        ["tail", "-n", "1", "--as", "hex"],
    ):
        remote = aiorecords(*command, url, cwd=tmp_path).stdout
        here = aiorecords(*command, str(local), cwd=tmp_path).stdout
        assert remote == here.replace(str(local).encode(), url.encode()), command
    out = tmp_path / "out"
    aiorecords("extract", url, "-C", str(out), cwd=tmp_path)
    assert (out / "notes" / "a.txt").read_bytes() == b"second\n"
    assert (out / "b.bin").read_bytes() == bytes(range(256)) * 50
    converted = tmp_path / "copy.log"
    aiorecords("convert", "--to", "records", url, str(converted), cwd=tmp_path)
    assert converted.exists()


def test_a_damaged_archive_object_is_reported_as_the_file_is(
    http_objects: Objects, tmp_path: Path
) -> None:
    url, local = archive_pair(http_objects, tmp_path)
    data = bytearray(local.read_bytes())
    data[30] ^= 0xFF  # inside the first element
    local.write_bytes(bytes(data))
    http_objects.put("cli.archive", bytes(data))
    for command in (["verify"], ["ls"]):
        remote = aiorecords(*command, url, cwd=tmp_path, check_status=None)
        here = aiorecords(*command, str(local), cwd=tmp_path, check_status=None)
        assert remote.returncode == here.returncode != 0, command
        assert b"Traceback" not in remote.stderr
        assert remote.stdout == here.stdout.replace(str(local).encode(), url.encode())


def test_convert_into_a_file_url_writes_that_local_file(tmp_path: Path) -> None:
    records, _ = log(tmp_path, 24)
    aiorecords(
        "convert",
        "--to",
        "capture",
        str(tmp_path / "local.log"),
        f"file://{tmp_path}/out.capture",
        cwd=tmp_path,
    )
    assert (tmp_path / "out.capture").exists()
    done = aiorecords("cat", "--as", "hex", str(tmp_path / "out.capture"), cwd=tmp_path)
    assert done.stdout.splitlines() == [r.hex().encode() for r in records]
