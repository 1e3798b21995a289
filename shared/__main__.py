"""``python -m shared``: see :mod:`shared.cli`."""

import sys

try:
    from shared.cli import main
except ModuleNotFoundError as missing:
    print(
        f"python -m shared needs the app's packages, and {missing.name!r} is not installed for {sys.executable}. "
        "Run it with the project's environment: .venv/bin/python -m shared ... (make venv creates it), "
        "or activate it first: . .venv/bin/activate",
        file=sys.stderr,
    )
    sys.exit(2)

sys.exit(main())
