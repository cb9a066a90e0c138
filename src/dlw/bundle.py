"""The one-file bundle: a run's prediction needs in a ``.dlw.zip``, checked against a manifest of hashes.

``dlw share RUN --output model.dlw.zip`` packs ``model.keras``, ``schema.json``, the
unfamiliar-input detector (``ood.json``, ``ood.npz``), ``MODEL_CARD.md``, ``metrics.json``,
``config.yaml``, ``run.json`` and ``splits.json`` (row numbers only), plus ``manifest.json``: the SHA-256 and size of every member
and the dlw/Keras versions that wrote it. No plots, no data, no pickle.

Opening a bundle reads it, never runs it: every member must be a plain file with a name
from the list above (no folders, no absolute paths, no ``..``), listed in the manifest,
with the recorded hash; anything missing, changed or extra is a one-line error naming the
member. The checked members are written to a private temporary folder (removed when the
process ends) that ``dlw.load`` reads like any run folder: JSON, YAML, ``np.load`` with
``allow_pickle=False`` and ``model.keras`` with Keras's ``safe_mode``. The manifest guards
against damage and careless edits; it is not a signature (whoever can rewrite the bundle
can rewrite the manifest).

>>> from dlw.bundle import write_bundle          # doctest: +SKIP
>>> write_bundle("runs/penguins", "penguins.dlw.zip")   # doctest: +SKIP
>>> dlw.load("penguins.dlw.zip").predict(rows)          # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
import time
import warnings
import zipfile
from importlib import metadata
from pathlib import Path

import yaml

from dlw.card import model_card
from dlw.errors import DlwError
from dlw.runs import is_run_folder, json_text, read_json_or_none, write_atomic
from dlw.version import __version__

MANIFEST = "manifest.json"
FORMAT = "dlw-bundle"
FORMAT_VERSION = 1
REQUIRED = ("model.keras", "schema.json", "config.yaml", "run.json", "metrics.json", "MODEL_CARD.md")
# splits.json is row numbers, not data: with it ``dlw evaluate BUNDLE`` can re-measure where the data is at hand.
OPTIONAL = ("ood.json", "ood.npz", "splits.json")
SUFFIX = ".dlw.zip"
# A bundle's members are small files; a member that claims more is refused before it is read.
MAX_MEMBER_BYTES = 4 * 1024**3


class BundleVersionWarning(UserWarning):
    """A bundle written by another dlw or Keras version than the one loading it."""


def is_bundle(path) -> bool:
    """True for an existing file that is a zip archive (a bundle, or something posing as one)."""
    path = Path(path)
    return path.is_file() and zipfile.is_zipfile(path)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def installed_versions() -> dict:
    """The dlw and Keras versions installed here, read without importing Keras (the backend is chosen later)."""
    try:
        keras = metadata.version("keras")
    except metadata.PackageNotFoundError:  # pragma: no cover - keras is a dependency
        keras = None
    return {"dlw_version": __version__, "keras_version": keras}


def bundle_members(run_folder: Path) -> dict[str, bytes]:
    """What a bundle of ``run_folder`` holds, name to bytes; the model card is made now when the run has none."""
    run_folder = Path(run_folder)
    if not run_folder.is_dir() or not is_run_folder(run_folder):
        raise DlwError(f"{run_folder}: not a dlw run folder (no run.json); pass the folder `dlw train` wrote")
    members = {}
    for name in (*REQUIRED, *OPTIONAL):
        path = run_folder / name
        if path.is_file():
            members[name] = path.read_bytes()
        elif name == "MODEL_CARD.md":
            members[name] = model_card(run_folder).encode("utf-8")
        elif name in REQUIRED:
            raise DlwError(f"{run_folder}: has no {name}; the run is incomplete, so it cannot be shared: train it again")
    return members


def default_output(run_folder) -> Path:
    """``<the run's name>.dlw.zip`` in the working directory (the name in its ``config.yaml``, else the folder's)."""
    config_path = Path(run_folder) / "config.yaml"
    config = (yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else None) or {}
    return Path(f"{config.get('name') or Path(run_folder).resolve().name}{SUFFIX}")


def write_bundle(run_folder, output, *, overwrite: bool = False) -> Path:
    """Pack ``run_folder`` into the one-file bundle ``output``; returns the path written.

    Example:
        >>> write_bundle("runs/penguins", "penguins.dlw.zip")   # doctest: +SKIP
        PosixPath('penguins.dlw.zip')
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise DlwError(f"{output}: already exists; pass --overwrite to replace it, or choose another --output")
    if not output.parent.is_dir():
        raise DlwError(f"{output.parent}: folder does not exist; create it or choose another --output")
    members = bundle_members(run_folder)
    run = read_json_or_none(Path(run_folder) / "run.json") or {}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **installed_versions(),
        "backend": run.get("backend"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "members": {name: {"sha256": sha256_of(data), "bytes": len(data)} for name, data in members.items()},
    }

    def pack(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, json_text(manifest))
            for name, data in members.items():
                archive.writestr(name, data)

    return write_atomic(output, pack)


def _check_name(path: Path, info: zipfile.ZipInfo) -> str:
    """The member's name when it is a plain file dlw knows; else a one-line error naming it."""
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in Path(name.replace("\\", "/")).parts:
        raise DlwError(f"{path}: member {name!r} has an absolute path or '..'; dlw refuses such a bundle: ask for a new one")
    if info.is_dir() or "/" in name or "\\" in name or name not in (*REQUIRED, *OPTIONAL, MANIFEST):
        raise DlwError(f"{path}: member {name!r} is not part of a dlw bundle (extra member); the bundle was altered: ask for a new one")
    if info.file_size > MAX_MEMBER_BYTES:
        raise DlwError(f"{path}: member {name!r} claims {info.file_size:,} bytes, more than a bundle holds; the bundle was altered")
    return name


def read_manifest(path: Path, archive: zipfile.ZipFile) -> dict:
    """The bundle's ``manifest.json``, checked to be one dlw wrote."""
    if MANIFEST not in archive.namelist():
        raise DlwError(f"{path}: no {MANIFEST} in the archive; not a dlw bundle (make one with `dlw share RUN --output model.dlw.zip`)")
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except ValueError:
        raise DlwError(f"{path}: {MANIFEST} is not valid JSON; the bundle is damaged: ask for a new one") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("members"), dict):
        raise DlwError(f"{path}: {MANIFEST} is not a dlw bundle manifest; make one with `dlw share RUN --output model.dlw.zip`")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DlwError(
            f"{path}: bundle format {manifest.get('format_version')!r}; this dlw reads format {FORMAT_VERSION}: install the dlw that wrote it"
        )
    return manifest


def checked_members(path) -> tuple[dict, dict[str, bytes]]:
    """The manifest and every member's bytes, each checked against the manifest's hash; raises naming the member."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DlwError(f"{path}: not a readable zip archive ({exc}); pass a bundle written by `dlw share`") from None
    with archive:
        infos = archive.infolist()
        names = [_check_name(path, info) for info in infos]
        if len(set(names)) != len(names):
            raise DlwError(f"{path}: a member appears twice in the archive; the bundle was altered: ask for a new one")
        manifest = read_manifest(path, archive)
        expected = manifest["members"]
        for name in (*REQUIRED, *expected):
            if name not in names:
                raise DlwError(f"{path}: member {name!r} is missing; the bundle is incomplete: ask for a new one")
        members = {}
        for name in names:
            if name == MANIFEST:
                continue
            if name not in expected:
                raise DlwError(f"{path}: member {name!r} is not in {MANIFEST} (extra member); the bundle was altered")
            data = archive.read(name)
            if sha256_of(data) != expected[name].get("sha256"):
                raise DlwError(f"{path}: member {name!r} does not match its SHA-256 in {MANIFEST} (changed); the bundle was altered or damaged")
            members[name] = data
    return manifest, members


def version_differences(manifest: dict) -> list[str]:
    """What differs between the versions that wrote the bundle and those installed here (empty when none)."""
    here = installed_versions()
    differences = []
    for key, label in (("dlw_version", "dlw"), ("keras_version", "Keras")):
        if manifest.get(key) != here[key]:
            differences.append(f"{label} {manifest.get(key)} wrote it, {label} {here[key]} reads it")
    return differences


# Bundles opened by this process, by the SHA-256 of their checked manifest: the same bundle
# opened again (a server's reload, a notebook cell run twice) reuses its folder.
_OPENED: dict[str, Path] = {}


def _private_folder(key: str) -> Path:
    if key not in _OPENED or not _OPENED[key].is_dir():
        folder = Path(tempfile.mkdtemp(prefix="dlw-bundle-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _OPENED[key] = folder
    return _OPENED[key]


def open_bundle(path) -> Path:
    """Check a bundle and write its members to a private temporary folder; returns that folder.

    Warns (``BundleVersionWarning``) when the bundle was written by another dlw or Keras
    version, naming both; raises ``DlwError`` naming the member for anything altered.
    The folder is removed when the process ends.
    """
    manifest, members = checked_members(path)
    differences = version_differences(manifest)
    if differences:
        warnings.warn(
            f"{path}: {'; '.join(differences)}; predictions may differ slightly, check them on known rows",
            BundleVersionWarning,
            stacklevel=3,
        )
    folder = _private_folder(sha256_of(json_text(manifest, indent=None).encode("utf-8")))
    for name, data in members.items():
        if not (folder / name).is_file() or (folder / name).read_bytes() != data:
            (folder / name).write_bytes(data)
    return folder
