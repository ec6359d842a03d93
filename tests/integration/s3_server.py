"""An S3-compatible server (moto in server mode) on a free loopback port, for tests of the object-store lake.

    with running_s3_server() as server:
        server.endpoint                  # http://127.0.0.1:<port>
        with server.bucket() as url:     # s3://<fresh bucket>/lake-root, with AWS_* env pointing at the server
            Lake(url)

moto is a dev dependency; its server keeps everything in memory, so nothing outside the process is written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import pyarrow.fs as pafs
from tests.integration.processes import wait_until_answers
from tests.integration.pushgateway import LOOPBACK, free_port

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Server:
    """A running moto server."""

    endpoint: str
    process: subprocess.Popen

    def env(self) -> dict[str, str]:
        """The environment that points the lake at this server."""
        return {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    @contextmanager
    def bucket(self, prefix: str = "lake-root") -> Iterator[str]:
        """A fresh bucket, with the lake's environment set meanwhile; yields s3://<bucket>/<prefix>."""
        name = f"lake-{uuid.uuid4().hex[:12]}"
        saved = {key: os.environ.get(key) for key in self.env()}
        os.environ.update(self.env())
        try:
            filesystem = pafs.S3FileSystem(endpoint_override=self.endpoint.split("://", 1)[1], scheme="http",
                                           access_key="testing", secret_key="testing", region="us-east-1",
                                           connect_timeout=5, request_timeout=10, allow_bucket_creation=True)
            filesystem.create_dir(name)
            yield f"s3://{name}/{prefix}"
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextmanager
def running_s3_server() -> Iterator[S3Server]:
    """Start `moto_server` on a free loopback port; stop it on exit."""
    port = free_port()
    log: IO[str] = tempfile.TemporaryFile("w+")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, text=True)

    def output() -> str:
        log.seek(0)
        return log.read()

    try:
        endpoint = f"http://{LOOPBACK}:{port}"
        wait_until_answers(f"{endpoint}/moto-api/", process, timeout_s=START_TIMEOUT_S, name="moto server",
                           output=output)
        yield S3Server(endpoint, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
        log.close()
