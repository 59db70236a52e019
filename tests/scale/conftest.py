"""A real Dask cluster (distributed.LocalCluster, worker processes) and the
S3 test server, for the scale-out tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from storage.conftest import S3, _start_s3

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    started = _start_s3()
    try:
        yield started
    finally:
        started.server.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    """A client of a cluster of two worker processes of one thread each."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
