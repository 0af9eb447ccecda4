"""The versioned, pickle-free model artifact.

A model is a directory ``models/<version>/`` holding ``manifest.json`` (format version, creation time, data
span, parameters, counts, metrics and the sha256 of every other file), ``.npy``/``.npz`` arrays (loaded with
``allow_pickle=False``), ``.parquet`` tables and ``index.faiss``. It is written into a hidden temporary
directory and renamed into place, then ``models/current`` (a symlink) is repointed atomically, so a crash
never leaves a half-written model where the server looks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from recsys.model.manifest import FORMAT_VERSION, READABLE_FORMATS, Manifest

MANIFEST: Final[str] = "manifest.json"
CURRENT: Final[str] = "current"


class ArtifactError(RuntimeError):
    """A model directory is missing, corrupt or of an unsupported format. The message says which."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_version() -> str:
    """Sortable, unique-enough version name: UTC time to the microsecond."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def write_model(out_dir: Path, write_files: Callable[[Path], None], manifest: Manifest,
                make_current: bool = True) -> Path:
    """Write a model atomically: ``write_files(tmp_dir)`` fills a temp dir, checksums go into the manifest,
    the directory is renamed to ``out_dir/<version>`` and ``out_dir/current`` is repointed to it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    version = manifest.version
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=out_dir))
    try:
        write_files(tmp)
        files = {p.name: sha256_of(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        full = manifest.model_copy(update={"format_version": FORMAT_VERSION, "files": files})
        with (tmp / MANIFEST).open("w") as handle:
            json.dump(full.model_dump(), handle, indent=2, sort_keys=True, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        final = out_dir / version
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if make_current:
        point_current(out_dir, version)
    return final


def point_current(out_dir: Path, version: str) -> None:
    """Atomically repoint ``out_dir/current`` at ``version`` (a relative symlink, replaced by rename)."""
    if not (out_dir / version / MANIFEST).is_file():
        raise ArtifactError(f"no complete model {version!r} in {out_dir}")
    link_tmp = out_dir / f".current-{os.getpid()}"
    link_tmp.unlink(missing_ok=True)
    link_tmp.symlink_to(version, target_is_directory=True)
    os.replace(link_tmp, out_dir / CURRENT)


def read_manifest(model_dir: Path, verify: bool = True) -> Manifest:
    """Read and check a model's manifest: format version, presence and checksum of every listed file."""
    model_dir = Path(model_dir)
    manifest_path = model_dir / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{model_dir}: not a model directory (no {MANIFEST}); train one with `recsys train`")
    try:
        raw = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    fmt = raw.get("format_version") if isinstance(raw, dict) else None
    if fmt not in READABLE_FORMATS:
        raise ArtifactError(f"{model_dir}: format version {fmt!r}, this build reads "
                            f"{', '.join(map(str, READABLE_FORMATS))}: use the build that wrote it, or train the model "
                            "again with this one (`recsys train`)")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ArtifactError(f"{manifest_path}: invalid manifest ({exc.error_count()} errors, first: "
                            f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']})") from exc
    if not manifest.files:
        raise ArtifactError(f"{manifest_path}: lists no files")
    if verify:
        for name, expected in manifest.files.items():
            path = model_dir / name
            if not path.is_file():
                raise ArtifactError(f"{model_dir}: missing file {name}")
            if sha256_of(path) != expected:
                raise ArtifactError(f"{model_dir}: checksum mismatch for {name} (corrupt or modified)")
    return manifest


def directory_size(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(model_dir).iterdir() if p.is_file())
