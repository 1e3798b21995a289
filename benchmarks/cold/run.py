"""Runs one cold path (``run.py <script> [its arguments]``) and prints the process's own peak RSS (VmHWM, KiB).

The parent cannot use wait4's ru_maxrss: a forked child inherits the parent's high-water mark, and exec keeps it.
VmHWM belongs to the address space exec created, so it counts this program alone.
"""

import runpy
import sys
from pathlib import Path

runpy.run_path(str(Path(__file__).with_name(f"{sys.argv[1]}.py")), run_name="__main__")
print(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM")))
