"""Build the deployment package (``make package``): the app's own files in ``dist/package`` (the function folders,
``shared/``, ``host.json``, ``requirements.txt``; no tests, no tooling) and ``dist/sync.zip`` of them.

The app's bytecode is compiled here, for the Python that runs it (3.13), in unchecked-hash mode: Flex Consumption
runs the app from a read-only package, where Python can neither write a bytecode cache nor, with timestamp-based
caches, trust one whose sources' times the unzip changed; so without this every cold start compiles every module
the path imports. Unchecked-hash caches are used as they are, without reading the sources (PEP 552): right for a
package that never changes in place, wrong for a working tree, which is why this builds a copy.
``--no-bytecode`` builds the same package without it (the benchmark's comparison).
"""

from __future__ import annotations

import argparse
import compileall
import py_compile
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ("host.json", "requirements.txt")
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc")


def app_folders(root: Path = ROOT) -> list[str]:
    """``shared`` and every function folder (one with a function.json)."""
    return ["shared", *sorted(p.parent.name for p in root.glob("*/function.json"))]


def build(dest: Path, *, bytecode: bool = True) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in FILES:
        shutil.copy2(ROOT / name, dest / name)
    for folder in app_folders():
        shutil.copytree(ROOT / folder, dest / folder, ignore=SKIPPED)
        if bytecode and not compileall.compile_dir(
            dest / folder,
            quiet=1,
            stripdir=str(dest),
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        ):
            raise SystemExit(f"compiling {folder} failed")
    return dest


def zipped(package: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(package.rglob("*")):
            if path.is_file():
                out.write(path, path.relative_to(package))
    return archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / "dist" / "package")
    parser.add_argument("--no-bytecode", action="store_true", help="leave the app's bytecode out")
    args = parser.parse_args()
    package = build(args.dest, bytecode=not args.no_bytecode)
    archive = zipped(package, package.with_name("sync.zip"))
    print(
        f"{package} and {archive} ({archive.stat().st_size // 1024} KiB), bytecode for {sys.version.split()[0]}"
        if not args.no_bytecode
        else f"{package} and {archive}, without bytecode"
    )


if __name__ == "__main__":
    main()
