"""One chDB session shared by threads (the API's handlers run queries in a thread pool):
every query must run with its own parameters."""

from __future__ import annotations

import threading

from millrace.projections.store.chdb import ChdbStore


def test_threads_never_see_each_others_parameters(store: ChdbStore) -> None:
    wrong: list[tuple[int, object]] = []
    errors: list[BaseException] = []

    def worker(base: int) -> None:
        for i in range(150):
            x = base * 1000 + i
            try:
                rows = store.execute(
                    "SELECT {x:UInt32} + 0 AS x, {tag:String} AS tag",
                    {"x": x, "tag": f"t{x}"},
                ).rows
            except BaseException as exc:  # collected for the assert
                errors.append(exc)
                return
            if rows != [[x, f"t{x}"]]:
                wrong.append((x, rows))

    threads = [threading.Thread(target=worker, args=(b,)) for b in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []
