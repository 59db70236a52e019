"""The examples run and say what they did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_quickstart(tmp_path: Path) -> None:
    target = tmp_path / "events.capture"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[:4] == [f"committed {n} events" for n in (250, 500, 750, 1000)]
    assert "1000 events, metadata b'produced=1000'" in lines
    assert "events 500-502: [500, 501, 502]" in lines
    assert any(line.startswith("streamed all events: 17 paths") for line in lines)
    assert target.exists()


def test_quickstart_cleans_up_its_temporary_file() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    path = done.stdout.splitlines()[-1].split()[1]
    assert not Path(path).exists()


def test_archive_consumers(tmp_path: Path) -> None:
    target = tmp_path / "reports.gar"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "archive_consumers.py"), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    workers = [line for line in lines if line.startswith("worker ")]
    assert len(workers) == 3
    counts = [int(line.split()[3]) for line in workers]
    assert sum(counts) == 60
    assert "processed 60 of 60 entries" in lines
    assert any("60 entries, newest 'reports/059.txt'" in line for line in lines)
    assert "biggest entry 'reports/042.txt': 5088890 bytes" in lines
    assert target.exists()


def test_stream_generator(tmp_path: Path) -> None:
    target = tmp_path / "events.capture"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "stream_generator.py"), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "produced 2000 events in batches of 100"
    assert lines[1] == "consumed 2000 events in order (1334 clicks)"
    assert lines[2].startswith("longest stall of the consumer: ")


def test_dask_events(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "dask_events.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "40 logs, 80 partitions"
    counts = {line.split(":")[0]: int(line.split()[1]) for line in lines[1:5]}
    assert counts == {
        "page_view": 20869,
        "click": 20870,
        "purchase": 20869,
        "error": 17392,
    }
    assert lines[5].startswith("slowest: ")
    assert lines[5].count("996 ms") == 3
    assert lines[6] == "wrote 17392 errors into 4 TFRecord files"
    assert sorted(os.listdir(tmp_path / "errors")) == [
        f"part-{n}.tfrecord" for n in range(4)
    ]
