"""The host's Storage queue extension, as far as the app can see it, against Azurite: queue output bindings written
once a function returns, and queue triggers polled, retried and poisoned as ``host.json``'s ``extensions.queues``
says.

What the host does and this does too: a message's content is base64 (``messageEncoding``); up to ``batchSize``
messages run at once, and more are fetched when no more than ``newBatchThreshold`` are running; a failed invocation
makes its message visible again after ``visibilityTimeout``; on the try ``maxDequeueCount`` it is moved to
``<queue>-poison`` instead. https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage, QueueServiceClient

# The host's defaults, where host.json says nothing.
DEFAULTS = {
    "batchSize": 16,
    "maxPollingInterval": "00:01:00",
    "visibilityTimeout": "00:00:00",
    "maxDequeueCount": 5,
    "messageEncoding": "base64",
}
# How long a fetched message stays invisible while its invocation runs (the host renews it; ours end sooner).
LEASE_SECONDS = 600
FIRST_POLL_SECONDS = 0.1


def timespan(text: str) -> float:
    """A .NET TimeSpan as host.json writes it (``hh:mm:ss``, with optional fractions of a second)."""
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class QueueOptions:
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    base64: bool = True

    @classmethod
    def from_host_json(cls, app_root: Path, **overrides: Any) -> QueueOptions:
        """``extensions.queues`` of the app's host.json; ``overrides`` for a test that cannot wait minutes."""
        said = json.loads((app_root / "host.json").read_text()).get("extensions", {}).get("queues", {})
        options = {**DEFAULTS, **said}
        batch = int(options["batchSize"])
        return replace(
            cls(
                batch_size=batch,
                new_batch_threshold=int(options.get("newBatchThreshold", batch // 2)),
                max_polling_interval=timespan(options["maxPollingInterval"]),
                visibility_timeout=timespan(options["visibilityTimeout"]),
                max_dequeue_count=int(options["maxDequeueCount"]),
                base64=options["messageEncoding"].lower() == "base64",
            ),
            **overrides,
        )


class Queues:
    """The storage account's queues, as the host reaches them through ``AzureWebJobsStorage``."""

    def __init__(self, connection_string: str, options: QueueOptions) -> None:
        self.options = options
        self._service = QueueServiceClient.from_connection_string(connection_string)
        self._clients: dict[str, QueueClient] = {}
        self._lock = threading.Lock()

    def client(self, name: str) -> QueueClient:
        """The queue ``name``, created on first use as the host creates the queues its bindings name."""
        with self._lock:
            found = self._clients.get(name)
            if found is None:
                found = self._clients[name] = self._service.get_queue_client(name)
                with contextlib.suppress(ResourceExistsError):
                    found.create_queue()
            return found

    def put(self, name: str, messages: list[str]) -> None:
        """What an output binding's value becomes: one message per item, in parallel as the host sends them."""
        queue = self.client(name)
        with ThreadPoolExecutor(max_workers=min(32, max(1, len(messages)))) as pool:
            list(pool.map(lambda text: queue.send_message(self.encode(text)), messages))

    def texts(self, name: str) -> list[str]:
        """Every message now visible on ``name``, decoded, without taking them (at most 32, as Storage peeks)."""
        return [self.decode(m.content) for m in self.client(name).peek_messages(max_messages=32)]

    def count(self, name: str) -> int:
        return int(self.client(name).get_queue_properties().approximate_message_count)

    def encode(self, text: str) -> str:
        return base64.b64encode(text.encode()).decode() if self.options.base64 else text

    def decode(self, content: str) -> str:
        return self.decode_bytes(content).decode(errors="replace")

    def decode_bytes(self, content: str) -> bytes:
        if not self.options.base64:
            return content.encode()
        try:
            return base64.b64decode(content, validate=True)
        except binascii.Error:
            return content.encode()


# What the listener hands the host to run: the function's name and the message, returning whether it succeeded.
Invoke = Callable[[str, QueueMessage, bytes], bool]
Log = Callable[[str, str], None]


class QueueListener:
    """One queue trigger's polling loop, as the host runs it per function and per instance."""

    def __init__(self, function: str, queue: str, queues: Queues, invoke: Invoke, log: Log) -> None:
        self.function = function
        self.queue = queue
        self.queues = queues
        self._invoke = invoke
        self._log = log
        self._stop = threading.Event()
        options = queues.options
        self._pool = ThreadPoolExecutor(
            max_workers=options.batch_size + options.new_batch_threshold, thread_name_prefix=f"queue-{function}"
        )
        self._running = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._poll, name=f"listener-{function}", daemon=True)

    def start(self) -> None:
        self.queues.client(self.queue)
        self.queues.client(f"{self.queue}-poison")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._running == 0

    def _poll(self) -> None:
        """Fetch when at most ``newBatchThreshold`` run; back off to ``maxPollingInterval`` while the queue is empty."""
        options = self.queues.options
        wait = FIRST_POLL_SECONDS
        client = self.queues.client(self.queue)
        while not self._stop.is_set():
            with self._lock:
                room = options.batch_size if self._running <= options.new_batch_threshold else 0
            fetched = []
            if room:
                try:
                    fetched = list(
                        client.receive_messages(
                            messages_per_page=min(32, room),
                            max_messages=min(32, room),
                            visibility_timeout=LEASE_SECONDS,
                        )
                    )
                except Exception as exc:  # the host logs a storage failure and polls again
                    self._log("Warning", f"Polling {self.queue} failed: {exc}")
            for message in fetched:
                with self._lock:
                    self._running += 1
                self._pool.submit(self._process, message)
            if fetched or not room:
                wait = FIRST_POLL_SECONDS
                self._stop.wait(0.01 if not room else 0)
            else:
                self._stop.wait(wait)
                wait = min(wait * 2, options.max_polling_interval)

    def _process(self, message: QueueMessage) -> None:
        try:
            succeeded = self._invoke(self.function, message, self.queues.decode_bytes(message.content))
            self._settle(message, succeeded)
        finally:
            with self._lock:
                self._running -= 1

    def _settle(self, message: QueueMessage, succeeded: bool) -> None:
        client = self.queues.client(self.queue)
        options = self.queues.options
        try:
            if succeeded:
                client.delete_message(message)
            elif message.dequeue_count >= options.max_dequeue_count:
                poison = f"{self.queue}-poison"
                self._log(
                    "Warning",
                    f"Message has reached MaxDequeueCount of {options.max_dequeue_count}. Moving message to queue "
                    f"'{poison}'.",
                )
                self.queues.client(poison).send_message(message.content)
                client.delete_message(message)
            else:
                client.update_message(message, visibility_timeout=int(options.visibility_timeout))
        except ResourceNotFoundError:
            pass  # its lease was lost: the message is someone else's now, as with the host
