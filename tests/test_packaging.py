"""The installable package carries the chat page's files: a regular (non-editable) install, as the
Docker image and the systemd instructions do it, must serve the same page the tests see."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import botline

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(botline.__file__).resolve().parent
DATA_FOLDERS = ("web", "store/migrations")


def test_the_wheel_holds_every_web_asset_and_migration(tmp_path: Path) -> None:
    context = tmp_path / "context"  # what deploy/Dockerfile copies (.dockerignore), so no stale build/ helps
    shutil.copytree(ROOT / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, context / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(context)],
                   check=True, capture_output=True)
    [wheel] = tmp_path.glob("botline-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"botline/{path.relative_to(PACKAGE).as_posix()}"
                for folder in DATA_FOLDERS for path in (PACKAGE / folder).rglob("*")
                if path.is_file() and "__pycache__" not in path.parts}
    assert expected and expected <= packaged, sorted(expected - packaged)
