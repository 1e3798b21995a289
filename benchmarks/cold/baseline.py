"""What the worker has already paid before the first invocation: importing azure.functions."""

import azure.functions  # noqa: F401
