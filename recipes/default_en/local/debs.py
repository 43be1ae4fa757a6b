"""Debian packages fetched and unpacked into the recipe's work folder, leaving the system as it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def extract(folder: Path, packages: tuple[str, ...]) -> Path:
    """`apt-get download` + `dpkg -x` the packages into folder/x, once (folder/.done); returns folder/x."""
    root = folder / "x"
    if (folder / ".done").exists():
        return root
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", *packages], cwd=folder, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("error: apt-get not found: pass --extracted with the unpacked packages")
    except subprocess.CalledProcessError as e:
        last = (e.stderr or e.stdout).strip().splitlines()[-1:] or ["?"]
        sys.exit(f"error: apt-get download {' '.join(packages)} failed ({last[0]}; try apt-get update first)")
    for deb in sorted(folder.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    (folder / ".done").touch()
    return root
