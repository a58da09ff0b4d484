"""moto's S3 server mode on 127.0.0.1 and a free port, for tests that need an S3
protocol server (the archive store): ``with MotoS3() as s3: s3.url("bucket")``."""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Any


class MotoS3:
    """A ThreadedMotoServer started on enter and stopped on exit; a fresh bucket per
    :meth:`bucket` call."""

    key = secret = "testing"

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    def __enter__(self) -> MotoS3:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.stop()

    @property
    def storage_options(self) -> dict[str, Any]:
        """What ``archive.storage_options`` holds for this server."""
        return {"endpoint_url": self.endpoint, "key": self.key, "secret": self.secret}

    def bucket(self, name: str) -> str:
        """Create bucket ``name``; returns ``s3://name``."""
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        ).create_bucket(Bucket=name)
        return f"s3://{name}"
