"""Making a loop's S3 client: the heavy parts (importing s3fs, aiobotocore
and aiohttp; reading botocore's JSON models) run in a worker thread, not on
the event loop, and the session made there keeps what s3fs would have made
of the storage options (a named profile, say)."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

import pytest

from aiorecords import RecordsReader, RecordsWriter
from aiorecords.errors import StorageError

from .conftest import S3

# Run in a fresh interpreter: nothing imported yet, nothing read yet.
CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, threading

    import botocore.loaders

    from aiorecords import RecordsReader

    endpoint, url = sys.argv[1], sys.argv[2]
    on_loop = {"imports": [], "data files": []}


    class ImportSpy:
        def find_spec(self, name, path=None, target=None):
            if threading.current_thread() is threading.main_thread():
                on_loop["imports"].append(name)
            return None


    read_file = botocore.loaders.JSONFileLoader.load_file


    def spied(self, file_path):
        found = read_file(self, file_path)
        # (Looking for an optional file that is not there is no reading.)
        if found is not None and threading.current_thread() is threading.main_thread():
            on_loop["data files"].append(file_path)
        return found


    botocore.loaders.JSONFileLoader.load_file = spied


    async def main():
        sys.meta_path.insert(0, ImportSpy())
        options = {
            "key": "testing",
            "secret": "testing",
            "endpoint_url": endpoint,
            "client_kwargs": {"region_name": "us-east-1"},
        }
        async with RecordsReader(url, storage_options=options) as reader:
            records = [record async for record in reader]
        sys.meta_path.pop(0)
        return records


    records = asyncio.run(main())
    print(json.dumps({"records": [r.decode() for r in records], **on_loop}))
    """
)


async def test_the_client_is_made_without_importing_or_reading_on_the_loop(
    s3: S3, tmp_path: Path
) -> None:
    url = await log_on_s3(s3, "client-made", [b"one", b"two"])
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        s3.endpoint,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    seen = json.loads(out)
    assert seen["records"] == ["one", "two"]
    heavy = ("s3fs", "aiobotocore", "botocore", "aiohttp", "yarl", "multidict")
    assert [name for name in seen["imports"] if name.split(".")[0] in heavy] == []
    # Its JSON models (a service model of megabytes among them) were read
    # in the worker thread; the loop's part found them read.
    assert seen["data files"] == []


async def log_on_s3(s3: S3, bucket: str, records: list[bytes]) -> str:
    """The URL of a new log of ``records`` in a new bucket."""
    url = s3.bucket(bucket) + "/events.log"
    async with RecordsWriter(url, storage_options=s3.options) as writer:
        await writer.write_many(records)
    return url


@pytest.fixture
def aws_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "aws-config"
    config.write_text("[profile events]\nregion = us-east-1\n")
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        "[events]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return config


async def test_a_named_profile_in_the_storage_options_is_used(
    s3: S3, aws_profiles: Path
) -> None:
    url = await log_on_s3(s3, "profiled", [b"by profile"])
    # No key or secret given: the profile's credentials reach the server.
    options = {"endpoint_url": s3.endpoint, "profile": "events"}
    async with RecordsReader(url, storage_options=options) as reader:
        assert [record async for record in reader] == [b"by profile"]


async def test_a_profile_that_does_not_exist_is_a_typed_error_naming_the_url(
    s3: S3, aws_profiles: Path
) -> None:
    url = await log_on_s3(s3, "unprofiled", [b"x"])
    options = {"endpoint_url": s3.endpoint, "profile": "nobody"}
    with pytest.raises(StorageError) as raised:
        async with RecordsReader(url, storage_options=options):
            pass
    assert url in str(raised.value)
    assert "nobody" in str(raised.value)


async def test_many_first_opens_at_once_with_cancellations(
    s3: S3, aws_profiles: Path
) -> None:
    """Forty tasks open the same loop's first S3 reader together, every
    third cancelled while the client is being made: each of the others
    gets the same typed error for a missing profile, and the next open
    with good options makes its client and reads."""
    url = await log_on_s3(s3, "many-first", [b"a", b"b"])

    async def open_and_read(options: dict[str, object]) -> list[bytes]:
        async with RecordsReader(url, storage_options=options) as reader:
            return [record async for record in reader]

    bad = {"endpoint_url": s3.endpoint, "profile": "nobody"}
    tasks = [asyncio.create_task(open_and_read(bad)) for _ in range(40)]
    await asyncio.sleep(0)  # all of them are waiting on the one making
    for task in tasks[::3]:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for n, outcome in enumerate(outcomes):
        if n % 3 == 0:
            assert isinstance(outcome, (asyncio.CancelledError, StorageError))
        else:
            assert isinstance(outcome, StorageError), outcome
            assert url in str(outcome)
    good = {"endpoint_url": s3.endpoint, "profile": "events"}
    results = await asyncio.gather(*(open_and_read(good) for _ in range(10)))
    assert results == [[b"a", b"b"]] * 10
