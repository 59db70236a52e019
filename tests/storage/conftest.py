"""A real HTTP server on loopback serving objects with range requests, as
object storage and web servers do (fsspec's HTTP file system reads it)."""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fsspec
import pytest


@dataclass
class Objects:
    """What the server serves, and what it was asked."""

    data: dict[str, bytes] = field(default_factory=dict)
    ranges: list[tuple[str, int, int]] = field(default_factory=list)
    # The client ports that connected: one per connection.
    connections: set[int] = field(default_factory=set)
    # After this many range requests, drop each connection unanswered.
    fail_after: int | None = None
    # Answer range requests with this status (429, 503: "slow down").
    refuse_with: int | None = None
    url: str = ""

    def put(self, name: str, data: bytes) -> str:
        self.data[name] = data
        return f"{self.url}/{name}"


def _handler(objects: Objects) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's
            # algorithm and the client's delayed ACK make each request 40 ms.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: object) -> None:
            pass  # quiet

        def _object(self) -> bytes | None:
            objects.connections.add(self.client_address[1])
            data = objects.data.get(self.path.lstrip("/"))
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
            return data

        def do_HEAD(self) -> None:
            data = self._object()
            if data is not None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()

        def do_GET(self) -> None:
            data = self._object()
            if data is None:
                return
            wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if wanted is None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            start = int(wanted[1])
            end = min(int(wanted[2]) + 1 if wanted[2] else len(data), len(data))
            objects.ranges.append((self.path, start, end))
            if objects.refuse_with is not None:
                self.send_response(objects.refuse_with)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if (
                objects.fail_after is not None
                and len(objects.ranges) > objects.fail_after
            ):
                self.close_connection = True  # the server goes away mid-read
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            self.send_header("Content-Length", str(end - start))
            self.end_headers()
            self.wfile.write(data[start:end])

    return Handler


@pytest.fixture
def memory_fs():
    """fsspec's memory file system, emptied after the test."""
    fs = fsspec.filesystem("memory")
    yield fs
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A client that drops a connection mid-response (a cancelled or
        # closed reader) is expected here; anything else is reported.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@pytest.fixture
def http_objects() -> Iterator[Objects]:
    """Objects served over HTTP on 127.0.0.1; ``put()`` gives each a URL."""
    objects = Objects()
    server = _Server(("127.0.0.1", 0), _handler(objects))
    server.daemon_threads = True
    objects.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield objects
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class S3:
    """A real S3 protocol server (moto in server mode) on loopback."""

    endpoint: str
    server: object

    @property
    def options(self) -> dict[str, object]:
        """The ``storage_options`` s3fs needs to reach it."""
        return {
            "key": "testing",
            "secret": "testing",
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": "us-east-1"},
        }

    @property
    def options_failing_fast(self) -> dict[str, object]:
        """`options`, with short timeouts and no retries: for tests that
        stop the server and expect the error, not a long wait."""
        return {
            **self.options,
            "config_kwargs": {
                "connect_timeout": 1,
                "read_timeout": 2,
                "retries": {"max_attempts": 1},
            },
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def bucket(self, name: str) -> str:
        """A new, empty bucket's URL (``s3://name``)."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def keys(self, url: str) -> dict[str, bytes]:
        """The objects of the bucket ``url`` names, by key."""
        bucket = url.removeprefix("s3://").split("/")[0]
        client = self.client()
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {
            item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])[
                "Body"
            ].read()
            for item in listed
        }

    def unfinished_uploads(self, url: str) -> list[object]:
        """The multipart uploads begun in the bucket and not yet ended."""
        bucket = url.removeprefix("s3://").split("/")[0]
        found = self.client().list_multipart_uploads(Bucket=bucket)
        return list(found.get("Uploads", []))

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` as ``key`` in a bucket of its own; its URL."""
        bucket = f"b{len(data)}-{abs(hash(key)) % 10**8}"
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"


def _start_s3() -> S3:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return S3(f"http://127.0.0.1:{port}", server)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """One moto S3 server for the test session."""
    started = _start_s3()
    try:
        yield started
    finally:
        started.server.stop()  # type: ignore[attr-defined]


@pytest.fixture
def s3_own() -> Iterator[S3]:
    """A moto S3 server of the test's own, which it may stop."""
    started = _start_s3()
    try:
        yield started
    finally:
        with contextlib.suppress(Exception):
            started.server.stop()  # type: ignore[attr-defined]
