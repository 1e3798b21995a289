"""This app, cold: one webhook call (one configured connector) in a process that has imported azure.functions."""

import os
import sys

import azure.functions as func

sys.path.insert(0, os.environ["APP_ROOT"])

import sync_http


class Unqueued(func.Out):
    """The queue output binding, as the host hands it: without TENANT_IDS nothing is put on it."""

    def set(self, val: object) -> None:
        raise SystemExit("a single-tenant webhook queued messages")

    def get(self) -> None:
        return None


answer = sync_http.main(
    func.HttpRequest(method="POST", url="http://localhost/api/sync", headers={}, params={}, body=b""), Unqueued()
)
if answer.status_code != 202:
    raise SystemExit(answer.get_body().decode())
