"""Shares the test session's chDB store with worker processes (test scaffolding).

chDB opens a data directory in one process only, and no ClickHouse server can run
here, so tests that need several worker *processes* on one store serve it from the
pytest process: :class:`StoreServer` answers ``ProjectionStore`` calls (pickled, on
127.0.0.1 only, one at a time) and :class:`RemoteStore` is the client the workers use.
The projections, SQL and deduplication are still the real chDB ones.
"""

from __future__ import annotations

import pickle
import threading
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pyarrow as pa

from millrace.projections.store.base import ProjectionStore, QueryResult


class StoreServer:
    def __init__(self, store: ProjectionStore) -> None:
        self.store = store
        self.calls = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                method, args, kwargs = pickle.loads(body)
                try:
                    with lock:
                        outer.calls += 1
                        result: Any = ("ok", getattr(outer.store, method)(*args, **kwargs))
                except Exception as exc:  # handed to the client to raise
                    result = ("error", f"{type(exc).__name__}: {exc}")
                data = pickle.dumps(result)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StoreServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


class RemoteStore(ProjectionStore):
    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        req = urllib.request.Request(self.url, data=pickle.dumps((method, args, kwargs)))
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, value = pickle.loads(resp.read())
        if status == "error":
            raise RuntimeError(value)
        return value

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        result: QueryResult = self._call("execute", sql, params, settings)
        return result

    def query_arrow(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        table: pa.Table = self._call("query_arrow", sql, params, settings)
        return table

    def insert_arrow(
        self, sql: str, table: pa.Table, settings: Mapping[str, Any] | None = None
    ) -> None:
        self._call("insert_arrow", sql, table, settings)
