"""Where the zoo's models live: the repository's shipped copy, the local cache, and the manifest that vouches
for both.

The built zoo (a few MB of safetensors per model) ships in the repository under ``zoo/<kind>-<recipe hash>/``,
so every machine starts from the same weights: a rebuild from the same recipe differs across CPU families
(floating-point kernels differ), and so would every figure measured from it. Each model folder carries
``MANIFEST.json`` (the sha256 and size of every file). ``build_zoo`` copies a shipped model into the cache after
checking the manifest and the recipe stamp; a shipped copy that fails the check is reported by file name and
the model is rebuilt from its recipe instead. ``python -m engine.zoo --rebuild`` rebuilds on demand.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent.parent / "zoo"
# Where built and installed models live on this machine; outside the repository with CANDOR_CACHE.
CACHE = Path(os.environ.get("CANDOR_CACHE", Path(__file__).resolve().parent.parent / ".cache"))
MANIFEST = "MANIFEST.json"


class ZooIntegrityError(RuntimeError):
    """A model folder whose files do not match its manifest or whose recipe stamp is not the expected one."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Records the sha256 and size of every file of a model folder (the markers and the manifest itself aside)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in (MANIFEST, "_SUCCESS"))
    entries = {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in files}
    (folder / MANIFEST).write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")


def verify(folder: Path, recipe: dict) -> None:
    """Raises ZooIntegrityError naming the first file that is missing, altered or of another recipe."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ZooIntegrityError(f"{folder}: no {MANIFEST}")
    for name, entry in json.loads(manifest.read_text()).items():
        path = folder / name
        if not path.is_file():
            raise ZooIntegrityError(f"{path}: listed in {MANIFEST} but missing")
        if path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            raise ZooIntegrityError(f"{path}: content differs from {MANIFEST} (altered or truncated)")
    stamp = folder / "recipe.json"
    # Stamps written before they held only the model's own fields carry the other model's too: those are ignored.
    stamped = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if {k: stamped.get(k) for k in recipe} != recipe:
        raise ZooIntegrityError(f"{stamp}: recipe stamp missing or not the recipe asked for")


def install_shipped(name: str, recipe: dict, target: Path, shipped: Path = SHIPPED) -> bool:
    """Copies the shipped model ``name`` into ``target`` when it passes ``verify``; False when there is none or
    it fails (the caller then builds it, and the failure is printed)."""
    source = shipped / name
    if not source.is_dir():
        return False
    try:
        verify(source, recipe)
    except ZooIntegrityError as e:
        print(f"[zoo] WARNING: shipped model rejected, rebuilding it from its recipe: {e}", flush=True)
        return False
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    (tmp / "_SUCCESS").write_text("shipped\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return True


def ship(folders: list[Path], shipped: Path = SHIPPED) -> list[Path]:
    """Copies built model folders (with their manifests) into the repository's ``zoo/`` and removes every other
    shipped model, so the repository holds exactly the models of the current recipes."""
    keep = {folder.name for folder in folders}
    for old in shipped.glob("*-*"):
        if old.name not in keep:
            shutil.rmtree(old)
    for folder in folders:
        shutil.rmtree(shipped / folder.name, ignore_errors=True)
        shutil.copytree(folder, shipped / folder.name, ignore=shutil.ignore_patterns("_SUCCESS"))
    return [shipped / folder.name for folder in folders]
