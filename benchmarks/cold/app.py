"""This app, cold: one webhook call (one configured connector) in a process that has imported azure.functions."""

import os
import sys

import azure.functions as func

sys.path.insert(0, os.environ["APP_ROOT"])

import sync_http

answer = sync_http.main(
    func.HttpRequest(method="POST", url="http://localhost/api/sync", headers={}, params={}, body=b"")
)
if answer.status_code != 202:
    raise SystemExit(answer.get_body().decode())
