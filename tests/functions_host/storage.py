"""Azurite, Microsoft's Storage emulator (the npm package, pinned in tests/azurite and installed by make), as the
local host's storage account: its queues carry sync-tenants, its tables the app's stored state.

Each :class:`Azurite` is a process of its own on free ports, in memory only, so tests never share a queue.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
AZURITE = ROOT / "tests" / "azurite" / "node_modules" / ".bin" / "azurite"
# Azurite's one account, with the key every Storage emulator publishes (not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
STARTUP_TIMEOUT = 30.0
LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service (?:is )?successfully (?:listens on|listening at) (https?://\S+)"
)


class AzuriteMissing(RuntimeError):
    """Azurite is not installed: ``make test`` (or ``make demo``) installs it with npm."""


class Azurite:
    """One Azurite process: Blob, Queue and Table services on ports the system picks, nothing written to disk."""

    def __init__(self, *, oauth_cert: tuple[str, str] | None = None) -> None:
        """``oauth_cert`` (a certificate and its key, PEM files): HTTPS, and bearer tokens accepted, as Storage
        takes a managed identity's (Azurite checks their audience, issuer and lifetime, not their signature)."""
        self.endpoints: dict[str, str] = {}
        self._oauth = ["--oauth", "basic", "--cert", oauth_cert[0], "--key", oauth_cert[1]] if oauth_cert else []
        self._process: subprocess.Popen[str] | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        self._output: list[str] = []

    def start(self) -> Azurite:
        if not AZURITE.exists():
            raise AzuriteMissing(f"Azurite is not installed at {AZURITE}: run make test (or make demo) to install it")
        self._process = subprocess.Popen(  # noqa: S603 - the pinned Azurite, no shell
            [
                str(AZURITE),
                *("--blobHost", "127.0.0.1", "--blobPort", "0"),
                *("--queueHost", "127.0.0.1", "--queuePort", "0"),
                *("--tableHost", "127.0.0.1", "--tablePort", "0"),
                "--inMemoryPersistence",
                *("--extentMemoryLimit", "256"),
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
                *self._oauth,
            ],
            cwd=self._workdir.name,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()
        if not ready.wait(STARTUP_TIMEOUT):
            self.stop()
            raise RuntimeError(f"Azurite did not start: {''.join(self._output)[-2000:]}")
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._workdir.cleanup()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connection_string(self) -> str:
        """What ``AzureWebJobsStorage`` holds locally (``func start`` takes the same)."""
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};" + "".join(
            f"{kind}Endpoint={url}/{ACCOUNT};" for kind, url in sorted(self.endpoints.items())
        )

    def _read(self, ready: threading.Event) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._output.append(line)
            del self._output[:-200]
            found = LISTENING.search(line)
            if found:
                self.endpoints[found[1]] = found[2]
                if len(self.endpoints) == 3:
                    ready.set()
