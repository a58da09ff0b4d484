"""Topic administration for the CLI: synchronous, on kafka-python's admin client."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

from millrace.pipeline.errors import LogError

INSTALL_HINT = "topic administration needs kafka-python: pip install 'millrace[kafka]'"


def ensure_topics(
    bootstrap: str | list[str],
    topics: Iterable[str],
    partitions: int,
    replication: int,
    *,
    client_id: str = "millrace-admin",
    request_timeout_ms: int = 30_000,
    **client_kwargs: Any,
) -> list[str]:
    """Create the ``topics`` (full Kafka names) that do not exist yet; return those created.

    Existing topics are left as they are, whatever their partition count.  Extra keyword
    arguments (security settings) go to ``KafkaAdminClient``.
    """
    try:
        with warnings.catch_warnings():
            # kafka-python 3.0 uses importlib.resources.read_text (deprecated) at import.
            warnings.filterwarnings("ignore", r"(read|open)_text is deprecated", DeprecationWarning)
            from kafka import KafkaAdminClient
            from kafka.errors import KafkaError, TopicAlreadyExistsError
    except ImportError as exc:
        raise LogError(INSTALL_HINT) from exc

    names = list(dict.fromkeys(topics))
    if not names:
        return []
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            **client_kwargs,
        )
    except KafkaError as exc:
        raise LogError(f"kafka: cannot reach {bootstrap}: {exc!r}") from exc
    try:
        missing = [n for n in names if n not in set(admin.list_topics())]
        created = []
        for name in missing:  # one by one, so a racing creator only skips its topic
            try:
                admin.create_topics(
                    {name: {"num_partitions": partitions, "replication_factor": replication}}
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    except KafkaError as exc:
        raise LogError(f"kafka: creating topics {names} failed: {exc!r}") from exc
    finally:
        admin.close()
