"""The package builds and works where no C compiler can be found (issue 18).

The wheel is built from a copy of the source tree, the way pip builds it
for a user, with the compiler pointed at a path that does not exist; it is
then installed into a directory of its own and used from a fresh
interpreter, which must find no compiled kernels and still read and write
every format. The same build with the machine's compiler must carry them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip", "--no-cache-dir", "--disable-pip-version-check"]

# Everything a user's build would not see: build output, caches, virtual
# environments and the compiled module of the developer's editable install.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".nox",
    "build",
    "dist",
    "site",
    "*.egg-info",
    "*.so",
    "__pycache__",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
)

ROUND_TRIP = """
import asyncio, sys, tempfile, os
import aiorecords, aiorecords._kernels as kernels
from aiorecords import CaptureFile, RecordsReader, RecordsWriter
from aiorecords import TFRecordReader, TFRecordWriter

assert aiorecords.__file__.startswith(sys.argv[1]), aiorecords.__file__
print("compiled", kernels.compiled is not None)

async def main() -> None:
    records = [bytes([i % 251]) * (i % 300) for i in range(5000)]
    with tempfile.TemporaryDirectory() as d:
        for writer_type, reader_type in [
            (RecordsWriter, RecordsReader), (TFRecordWriter, TFRecordReader)
        ]:
            path = os.path.join(d, writer_type.__name__)
            async with writer_type(path) as writer:
                await writer.write_many(records)
            async with reader_type(path) as reader:
                batches = [batch async for batch in reader.batches()]
            got = [record for batch in batches for record in batch]
            assert got == records, writer_type
        path = os.path.join(d, "events.capture")
        async with CaptureFile(path, to_write=True, force_new_empty_file=True) as f:
            for record in records:
                await f.add_record(record)
            await f.commit()
        async with CaptureFile(path, encoding=None) as f:
            assert [r async for r in f.record_generator()] == records
    print("round trip ok")

asyncio.run(main())
"""


def build_wheel(tmp_path: Path, env: dict[str, str]) -> Path:
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    out = tmp_path / "wheels"
    build = ["wheel", "--no-deps", "--no-build-isolation", f"--wheel-dir={out}"]
    result = subprocess.run(
        [*PIP, *build, str(source)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("aiorecords-*.whl")
    return wheel


def install_and_run(tmp_path: Path, wheel: Path) -> str:
    target = tmp_path / "installed"
    subprocess.run(
        [*PIP, "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        check=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIORECORDS_")}
    # -S: no site, so no .pth file runs, and the editable install of the
    # checkout under test (whose finder would hand out its own compiled
    # module) is out of sight; the dependencies come from site-packages.
    libraries = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env["PYTHONPATH"] = os.pathsep.join([str(target), *sorted(libraries)])
    result = subprocess.run(
        [sys.executable, "-S", "-c", ROUND_TRIP, str(target)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def compiled_modules(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return [name for name in archive.namelist() if name.endswith(".so")]


@pytest.fixture
def build_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIORECORDS_")}


def test_installs_and_works_without_a_compiler(tmp_path, build_env) -> None:
    build_env["CC"] = str(tmp_path / "no-such-compiler")
    wheel = build_wheel(tmp_path, build_env)
    assert compiled_modules(wheel) == []
    output = install_and_run(tmp_path, wheel)
    assert "compiled False" in output
    assert "round trip ok" in output


def test_a_compiler_builds_the_kernels_into_the_wheel(tmp_path, build_env) -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on this machine")
    wheel = build_wheel(tmp_path, build_env)
    assert [Path(name).name.split(".")[0] for name in compiled_modules(wheel)] == [
        "_speedups"
    ]
    output = install_and_run(tmp_path, wheel)
    assert "compiled True" in output
    assert "round trip ok" in output


KERNELS_IN_USE = """
import aiorecords._kernels as kernels
from aiorecords.records import _log
from aiorecords.tfrecord import _frame
print(kernels.compiled is not None)
print(
    _log.fast_full_records is _log.full_records,
    _log.fast_encode_records is _log.encode_records,
    _frame.fast_good_records is _frame.good_records,
    _frame.fast_frame_records is _frame.frame_records,
    kernels.fast_take_records is kernels.take_records,
)
"""


@pytest.mark.parametrize(
    ("setting", "compiled"),
    [("1", False), ("yes", False), ("0", True), ("", True), (None, True)],
)
def test_the_environment_turns_the_kernels_off(
    setting: str | None, compiled: bool
) -> None:
    """AIORECORDS_NO_EXTENSIONS set to anything but "" or "0" puts every
    caller on the reference code; otherwise the compiled kernels are used
    wherever they are built (as they are for this run unless it is the
    pure-Python one)."""
    from aiorecords import _kernels

    if compiled and _kernels.compiled is None:
        pytest.skip("aiorecords._speedups is not built")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIORECORDS_")}
    if setting is not None:
        env["AIORECORDS_NO_EXTENSIONS"] = setting
    result = subprocess.run(
        [sys.executable, "-c", KERNELS_IN_USE],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    in_use, references = result.stdout.splitlines()
    assert in_use == str(compiled)
    assert references == " ".join([str(not compiled)] * 5)


STALE_BUILD = """
import asyncio, os, sys, tempfile, types, warnings

# An older build of the extension: a module with only some of the kernels.
stale = types.ModuleType("aiorecords._speedups")
stale.crc32c = lambda data, value=0: 0
sys.modules["aiorecords._speedups"] = stale
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import aiorecords._kernels as kernels
    from aiorecords import RecordsReader, RecordsWriter
print(kernels.compiled is None)
print(" | ".join(str(warning.message) for warning in caught))


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "log")
        async with RecordsWriter(path) as writer:
            await writer.write_many([b"a", b"b" * 50_000])
        async with RecordsReader(path) as reader:
            assert [r async for r in reader] == [b"a", b"b" * 50_000]
    print("round trip ok")

asyncio.run(main())
"""


def test_an_older_build_of_the_extension_is_not_used() -> None:
    """An editable install whose C file changed since it was built has a
    module without the newer kernels: aiorecords warns, says how to
    rebuild, and runs the reference code, instead of failing to import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIORECORDS_")}
    result = subprocess.run(
        [sys.executable, "-c", STALE_BUILD],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    unused, warned, round_trip = result.stdout.splitlines()
    assert unused == "True"
    assert "older build" in warned
    assert "capture_add" in warned
    assert "pip install -e ." in warned
    assert round_trip == "round trip ok"
