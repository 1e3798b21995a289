"""The Python language worker process, as the Functions host starts it for the v1 programming model.

Azure splits today's Python 3.13 worker in two: the library half, ``azure_functions_runtime_v1`` on PyPI,
which loads and invokes functions; and a gRPC proxy that ships only inside the host. This module is a
small proxy of our own: it connects to the host's ``FunctionRpc.EventStream``, says ``StartStream``,
hands each request to the library unchanged, and sends log records back as ``RpcLog`` messages.

Run as the host runs it: ``python worker.py --host 127.0.0.1 --port N --workerId ID --requestId ID
--grpcMaxMessageLength N``, with the app root as the working directory and in ``AzureWebJobsScriptRoot``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import logging
import os
import queue
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

PROTOS_MODULE = "_functions_rpc_protos"
SYSTEM_LOGGERS = ("azure.functions", "azure_functions_runtime_v1", "functions_worker")
log = logging.getLogger("functions_worker")


def load_protos() -> ModuleType:
    """The generated protobuf modules ship in the runtime's wheel as a top-level ``tests/protos`` package.

    Loaded under a private name so they cannot clash with this project's own ``tests`` package; protobuf
    allows one copy of the descriptors per process, so every caller shares this one.
    """
    if PROTOS_MODULE in sys.modules:
        return sys.modules[PROTOS_MODULE]
    files = importlib.metadata.files("azure-functions-runtime-v1") or []
    init = next(Path(str(f.locate())) for f in files if str(f).replace("\\", "/") == "tests/protos/__init__.py")
    spec = importlib.util.spec_from_file_location(PROTOS_MODULE, init, submodule_search_locations=[str(init.parent)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[PROTOS_MODULE] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class WorkerRequest:
    """What the library's handlers expect: the message, and for init/reload the protos and host."""

    name: str
    request: Any
    properties: dict[str, Any] = field(default_factory=dict)


class RpcLogHandler(logging.Handler):
    """Every log record in the worker becomes an ``RpcLog``, tagged with its invocation when it has one."""

    def __init__(self, proxy: Proxy) -> None:
        super().__init__()
        self.proxy = proxy

    def emit(self, record: logging.LogRecord) -> None:
        protos = self.proxy.protos
        levels = [
            (logging.CRITICAL, protos.RpcLog.Critical),
            (logging.ERROR, protos.RpcLog.Error),
            (logging.WARNING, protos.RpcLog.Warning),
            (logging.INFO, protos.RpcLog.Information),
            (logging.DEBUG, protos.RpcLog.Debug),
        ]
        level = next((rpc for py, rpc in levels if record.levelno >= py), protos.RpcLog.Trace)
        category = protos.RpcLog.System if record.name.startswith(SYSTEM_LOGGERS) else protos.RpcLog.User
        invocation_id = self.proxy.library.invocation_id_cv.get() if self.proxy.library else None
        self.proxy.send(
            rpc_log=protos.RpcLog(
                invocation_id=invocation_id or "",
                category=record.name,
                level=level,
                message=self.format(record),
                log_category=category,
            )
        )


class Proxy:
    """The gRPC half of the worker: one stream to the host, requests handed to the library."""

    STOP = object()

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.protos = load_protos()
        self.library: Any = None
        self.outgoing: queue.Queue[Any] = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.done = self.loop.create_future()

    def send(self, **content: Any) -> None:
        self.outgoing.put(self.protos.StreamingMessage(request_id=self.args.request_id, **content))

    def run(self) -> None:
        options = [
            ("grpc.max_receive_message_length", self.args.max_message_length),
            ("grpc.max_send_message_length", self.args.max_message_length),
        ]
        channel = grpc.insecure_channel(f"{self.args.host}:{self.args.port}", options)
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = self.protos.FunctionRpcStub(channel)
        self.send(start_stream=self.protos.StartStream(worker_id=self.args.worker_id))
        root = logging.getLogger()
        root.handlers = [RpcLogHandler(self)]
        debug = os.environ.get("PYTHON_ENABLE_DEBUG_LOGGING", "").lower() in ("1", "true")
        root.setLevel(logging.DEBUG if debug else logging.INFO)
        reader = threading.Thread(target=self._read, args=(stub,), name="grpc-reader", daemon=True)
        reader.start()
        self.loop.run_until_complete(self.done)
        self.outgoing.put(self.STOP)
        if self.library is not None:
            self.library.stop_threadpool_executor()

    def _outgoing_messages(self) -> Any:
        while (message := self.outgoing.get()) is not self.STOP:
            yield message

    def _read(self, stub: Any) -> None:
        try:
            for message in stub.EventStream(self._outgoing_messages()):
                asyncio.run_coroutine_threadsafe(self._handle(message), self.loop)
        finally:
            self.loop.call_soon_threadsafe(lambda: self.done.done() or self.done.set_result(None))

    async def _handle(self, message: Any) -> None:
        kind = message.WhichOneof("content")
        if kind == "worker_terminate":
            self.done.set_result(None)
        elif kind == "worker_status_request":
            self.send(worker_status_response=self.protos.WorkerStatusResponse())
        elif kind == "worker_init_request":
            self._load_library()
            request = WorkerRequest(kind, message, {"protos": self.protos, "host": self.args.host})
            self.send(worker_init_response=await self.library.worker_init_request(request))
        elif kind == "functions_metadata_request":
            response = await self.library.functions_metadata_request(WorkerRequest(kind, message))
            self.send(function_metadata_response=response)
        elif kind == "function_load_request":
            self.send(function_load_response=await self.library.function_load_request(WorkerRequest(kind, message)))
        elif kind == "invocation_request":
            self.send(invocation_response=await self.library.invocation_request(WorkerRequest(kind, message)))
        else:
            log.warning("The worker does not handle %s", kind)

    def _load_library(self) -> None:
        """Like the host's worker: the app root goes first on ``sys.path``, so ``from shared import`` works."""
        script_root = os.environ.get("AzureWebJobsScriptRoot", os.getcwd())  # noqa: SIM112 - the host's name
        if script_root not in sys.path:
            sys.path.insert(0, script_root)
        import azure_functions_runtime_v1  # noqa: PLC0415 - loaded at WorkerInitRequest, as the host's worker does

        self.library = azure_functions_runtime_v1
        self.library.start_threadpool_executor()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Both spellings the host uses: the original camelCase flags and the newer ``--functions-*`` ones."""
    parser = argparse.ArgumentParser(description="Python language worker (v1 programming model)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workerId", "--functions-worker-id", dest="worker_id")
    parser.add_argument("--requestId", "--functions-request-id", dest="request_id")
    parser.add_argument(
        "--grpcMaxMessageLength",
        "--functions-grpc-max-message-length",
        dest="max_message_length",
        type=int,
        default=2**31 - 1,
    )
    parser.add_argument("--functions-uri", dest="uri")
    args = parser.parse_args(argv)
    if args.uri and not args.host:
        address = args.uri.split("//", 1)[-1].rstrip("/")
        args.host, _, port = address.rpartition(":")
        args.port = int(port)
    return args


if __name__ == "__main__":
    Proxy(parse_args()).run()
