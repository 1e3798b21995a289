"""The Functions host's side of the worker protocol, for tests and for a local run without Core Tools.

It serves ``FunctionRpc.EventStream`` over gRPC, starts the real Python worker as a separate process the
way the host does, loads every function folder from its ``function.json`` as the host would, and sends
HTTP and timer invocations. What the worker answers (load results, invocation results, ``RpcLog``s) is
kept for the caller to assert on.

With :class:`~tests.functions_host.queues.Queues` (Azurite), it also writes what queue output bindings return and,
once :meth:`FunctionsHost.listen` is called, runs queue triggers as the host's queue extension does.

Protocol: https://github.com/Azure/azure-functions-language-worker-protobuf
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import grpc

from tests.functions_host.worker import load_protos

if TYPE_CHECKING:
    from azure.storage.queue import QueueMessage

    from tests.functions_host.queues import QueueListener, Queues

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
MAX_MESSAGE_LENGTH = 2**31 - 1
HOST_VERSION = "4.1044.0"
STARTUP_TIMEOUT = 30.0
CALL_TIMEOUT = 60.0
DIRECTIONS = {"in": 0, "out": 1, "inout": 2}
DATA_TYPES = {"undefined": 0, "string": 1, "binary": 2, "stream": 3}


class WorkerError(RuntimeError):
    """The worker did not start, or stopped answering."""


@dataclass(frozen=True)
class LogLine:
    invocation_id: str
    category: str
    level: str
    message: str


@dataclass(frozen=True)
class LoadResult:
    function_id: str
    trigger: dict[str, Any]
    succeeded: bool
    error: str | None
    bindings: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Invocation:
    invocation_id: str
    succeeded: bool
    error: str | None
    http: HttpAnswer | None
    logs: list[LogLine]
    function: str = ""
    queued: dict[str, list[str]] = field(default_factory=dict)  # what its queue output bindings put, by queue
    message: bytes | None = None  # a queue trigger's message, as the function received it


class FunctionsHost:
    """One app folder served by one real worker process."""

    def __init__(
        self,
        app_root: Path,
        *,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
        queues: Queues | None = None,
        on_queue_invocation: Callable[[Invocation], None] | None = None,
    ) -> None:
        self.app_root = app_root.resolve()
        self.protos = load_protos()
        self.loaded: dict[str, LoadResult] = {}
        self.logs: list[LogLine] = []
        self.queues = queues
        # Every queue-triggered invocation, in the order they ended; and who else is told of each.
        self.queue_invocations: list[Invocation] = []
        self._on_queue_invocation = on_queue_invocation
        self._listeners: list[QueueListener] = []
        self.worker_stderr = ""
        self._env = dict(env or {})
        self._python = python
        self._outgoing: queue.Queue[Any] = queue.Queue()
        self._pending: dict[tuple[str, str], Future[Any]] = {}
        self._lock = threading.Lock()
        self._started = threading.Event()
        self._server: grpc.Server | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def worker_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> FunctionsHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the worker, initialise it, and load every function (see :attr:`loaded`)."""
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=4),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_LENGTH),
                ("grpc.max_send_message_length", MAX_MESSAGE_LENGTH),
            ],
        )
        self.protos.add_FunctionRpcServicer_to_server(_Servicer(self), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self._process = subprocess.Popen(  # noqa: S603 - our own worker script, no shell
            [
                self._python,
                str(WORKER_SCRIPT),
                *("--host", "127.0.0.1", "--port", str(port)),
                *("--workerId", str(uuid.uuid4()), "--requestId", str(uuid.uuid4())),
                *("--grpcMaxMessageLength", str(MAX_MESSAGE_LENGTH)),
            ],
            cwd=self.app_root,
            env={
                **os.environ,
                **self._env,
                "AzureWebJobsScriptRoot": str(self.app_root),
                "FUNCTIONS_WORKER_RUNTIME": "python",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        threading.Thread(target=self._drain_stderr, args=(self._process.stderr,), daemon=True).start()
        if not self._started.wait(STARTUP_TIMEOUT):
            self.stop()
            raise WorkerError(f"the worker never opened its stream: {self.worker_stderr[-2000:]}")
        init = self._call(
            "worker_init",
            "",
            worker_init_request=self.protos.WorkerInitRequest(
                host_version=HOST_VERSION,
                function_app_directory=str(self.app_root),
                worker_directory=str(WORKER_SCRIPT.parent),
                capabilities={},
            ),
        )
        if init.result.status != self.protos.StatusResult.Success:
            raise WorkerError(f"worker init failed: {init.result.exception.message}")
        self._call(
            "function_metadata",
            "",
            functions_metadata_request=self.protos.FunctionsMetadataRequest(function_app_directory=str(self.app_root)),
        )
        for folder in sorted(p.parent for p in self.app_root.glob("*/function.json")):
            self.loaded[folder.name] = self._load(folder)

    def listen(self) -> None:
        """Start polling the queue of every queue-triggered function, as the host does once the app has loaded."""
        from tests.functions_host.queues import QueueListener  # noqa: PLC0415 - only with Azurite

        if self.queues is None:
            raise WorkerError("queue triggers need a storage account: FunctionsHost(queues=Queues(...))")
        for name, loaded in self.loaded.items():
            if loaded.succeeded and loaded.trigger.get("type") == "queueTrigger":
                listener = QueueListener(
                    name, loaded.trigger["queueName"], self.queues, self._run_queued, self._host_log
                )
                listener.start()
                self._listeners.append(listener)

    @property
    def queues_idle(self) -> bool:
        """No queue-triggered invocation is running."""
        return all(listener.idle for listener in self._listeners)

    def stop(self) -> None:
        for listener in self._listeners:
            listener.stop()
        if self._process is not None and self._process.poll() is None:
            self._send(worker_terminate=self.protos.FunctionRpc_pb2.WorkerTerminate())
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._outgoing.put(None)
        if self._server is not None:
            self._server.stop(grace=None)

    def invoke_http(
        self,
        function: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        route_params: Mapping[str, str] | None = None,
    ) -> Invocation:
        """What the host sends for an HTTP trigger: ``RpcHttp`` with the raw body as bytes, and the values of the
        route template's ``{parameters}`` in ``params``."""
        request = self.protos.RpcHttp(
            method=method.upper(),
            url=url,
            headers={k.lower(): v for k, v in (headers or {}).items()},
            query=dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)),
            params=dict(route_params or {}),
            body=self.protos.TypedData(bytes=body),
        )
        return self._invoke(function, self.protos.TypedData(http=request))

    def invoke_timer(self, function: str, *, past_due: bool = False) -> Invocation:
        """What the host sends for a timer trigger: its ``TimerInfo`` as JSON."""
        now = datetime.now(timezone.utc)
        info = {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {
                "Last": (now - timedelta(minutes=15)).isoformat(),
                "Next": (now + timedelta(minutes=15)).isoformat(),
                "LastUpdated": now.isoformat(),
            },
            "IsPastDue": past_due,
        }
        return self._invoke(function, self.protos.TypedData(json=json.dumps(info)))

    def invoke_queue(self, function: str, message: QueueMessage, body: bytes) -> Invocation:
        """What the host sends for a queue trigger: the decoded content (a string, or bytes when it is not UTF-8) and
        the message's metadata, which ``func.QueueMessage`` reads (``DequeueCount``, ``Id``, the times)."""
        try:
            data = self.protos.TypedData(string=body.decode())
        except UnicodeDecodeError:
            data = self.protos.TypedData(bytes=body)
        metadata = {
            "DequeueCount": self.protos.TypedData(json=str(message.dequeue_count)),
            "Id": self.protos.TypedData(string=message.id),
            "PopReceipt": self.protos.TypedData(string=message.pop_receipt or ""),
            **{
                name: self.protos.TypedData(string=when.isoformat())
                for name, when in (
                    ("InsertionTime", message.inserted_on),
                    ("ExpirationTime", message.expires_on),
                    ("NextVisibleTime", message.next_visible_on),
                )
                if when is not None
            },
        }
        return self._invoke(function, data, metadata)

    def _run_queued(self, function: str, message: QueueMessage, body: bytes) -> bool:
        invocation = replace(self.invoke_queue(function, message, body), message=body)
        with self._lock:
            self.queue_invocations.append(invocation)
        if self._on_queue_invocation is not None:
            self._on_queue_invocation(invocation)
        return invocation.succeeded

    def _host_log(self, level: str, message: str) -> None:
        self.logs.append(LogLine("", "Host.Queues", level, message))

    def _load(self, folder: Path) -> LoadResult:
        config = json.loads((folder / "function.json").read_text())
        function_id = str(uuid.uuid4())
        bindings = config.get("bindings", [])
        metadata = self.protos.RpcFunctionMetadata(
            name=folder.name,
            function_id=function_id,
            directory=str(folder),
            script_file=str(folder / config.get("scriptFile", "__init__.py")),
            entry_point=config.get("entryPoint", ""),
            language="python",
            bindings={
                b["name"]: self.protos.BindingInfo(
                    type=b["type"],
                    direction=DIRECTIONS[b.get("direction", "in")],
                    data_type=DATA_TYPES[b.get("dataType", "undefined")],
                )
                for b in bindings
            },
            raw_bindings=[json.dumps(b) for b in bindings],
        )
        answer = self._call(
            "function_load",
            function_id,
            function_load_request=self.protos.FunctionLoadRequest(function_id=function_id, metadata=metadata),
        )
        failed = answer.result.status != self.protos.StatusResult.Success
        trigger = next((b for b in bindings if b["type"].endswith("Trigger")), {})
        error = answer.result.exception.message if failed else None
        return LoadResult(function_id, trigger, not failed, error, tuple(bindings))

    def _invoke(self, function: str, trigger: Any, metadata: Mapping[str, Any] | None = None) -> Invocation:
        loaded = self.loaded.get(function)
        if loaded is None or not loaded.succeeded:
            raise WorkerError(f"{function} is not loaded: {loaded.error if loaded else 'no such function'}")
        invocation_id = str(uuid.uuid4())
        answer = self._call(
            "invocation",
            invocation_id,
            invocation_request=self.protos.InvocationRequest(
                invocation_id=invocation_id,
                function_id=loaded.function_id,
                input_data=[self.protos.ParameterBinding(name=loaded.trigger["name"], data=trigger)],
                trigger_metadata=dict(metadata or {}),
            ),
        )
        succeeded = answer.result.status == self.protos.StatusResult.Success
        error = None if succeeded else answer.result.exception.message
        queued: dict[str, list[str]] = {}
        if succeeded:
            try:
                queued = self._write_queue_outputs(loaded, answer.output_data)
            except Exception as exc:  # as the host: a binding it cannot write fails the invocation
                succeeded, error = False, f"the queue output binding could not be written: {exc}"
        return Invocation(
            invocation_id=invocation_id,
            succeeded=succeeded,
            error=error,
            http=self._http_answer(answer.return_value) if answer.HasField("return_value") else None,
            logs=[line for line in list(self.logs) if line.invocation_id == invocation_id],
            function=function,
            queued=queued,
        )

    def _write_queue_outputs(self, loaded: LoadResult, outputs: Any) -> dict[str, list[str]]:
        """Each queue output binding's value, written to its queue: a JSON array is one message per item."""
        queues = {b["name"]: b["queueName"] for b in loaded.bindings if b["type"] == "queue"}
        written: dict[str, list[str]] = {}
        for output in outputs:
            if output.name not in queues:
                continue
            kind = output.data.WhichOneof("data")
            if kind is None:
                continue
            value = getattr(output.data, kind)
            items = json.loads(value) if kind == "json" else [value.decode() if isinstance(value, bytes) else value]
            messages = [item if isinstance(item, str) else json.dumps(item) for item in items]
            if not messages:
                continue
            if self.queues is None:
                raise WorkerError("this host has no storage account (AzureWebJobsStorage) to write queue messages to")
            self.queues.put(queues[output.name], messages)
            written.setdefault(queues[output.name], []).extend(messages)
        return written

    def _http_answer(self, value: Any) -> HttpAnswer | None:
        if value.WhichOneof("data") != "http":
            return None
        body = value.http.body
        kind = body.WhichOneof("data")
        raw = getattr(body, kind) if kind else b""
        return HttpAnswer(
            status=int(value.http.status_code or 200),
            headers={k.lower(): v for k, v in value.http.headers.items()},
            body=raw.encode() if isinstance(raw, str) else bytes(raw),
        )

    def _call(self, kind: str, key: str, **content: Any) -> Any:
        """Send one request and wait for the worker's matching response."""
        answer: Future[Any] = Future()
        with self._lock:
            self._pending[(kind, key)] = answer
        self._send(**content)
        try:
            return answer.result(timeout=CALL_TIMEOUT)
        except TimeoutError:
            raise WorkerError(f"no {kind} response from the worker: {self.worker_stderr[-2000:]}") from None

    def _send(self, **content: Any) -> None:
        self._outgoing.put(self.protos.StreamingMessage(request_id=str(uuid.uuid4()), **content))

    def _outgoing_messages(self) -> Iterator[Any]:
        while (message := self._outgoing.get()) is not None:
            yield message

    def _received(self, message: Any) -> None:
        kind = message.WhichOneof("content")
        if kind == "start_stream":
            self._started.set()
        elif kind == "rpc_log":
            entry = message.rpc_log
            level = self.protos.RpcLog.Level.Name(entry.level)
            self.logs.append(LogLine(entry.invocation_id, entry.category, level, entry.message))
        else:
            response = getattr(message, kind)
            key = {
                "function_load_response": "function_id",
                "invocation_response": "invocation_id",
            }.get(kind)
            pending_key = (kind.removesuffix("_response"), getattr(response, key) if key else "")
            with self._lock:
                answer = self._pending.pop(pending_key, None)
            if answer is not None:
                answer.set_result(response)

    def _drain_stderr(self, stream: Any) -> None:
        """Keep the worker's console output for error messages; an unread pipe would block the worker."""
        for line in iter(stream.readline, b""):
            self.worker_stderr = (self.worker_stderr + line.decode(errors="replace"))[-20_000:]


class _Servicer:
    """``FunctionRpc.EventStream``: one bidirectional stream per worker."""

    def __init__(self, host: FunctionsHost) -> None:
        self.host = host

    def EventStream(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        def read() -> None:
            try:
                for message in request_iterator:
                    self.host._received(message)
            except grpc.RpcError:
                pass  # the stream ends when the host stops: nothing more to read

        threading.Thread(target=read, name="worker-messages", daemon=True).start()
        yield from self.host._outgoing_messages()
