"""Finding a set under the data root, and downloading it when asked: the official files are
fetched with plain ``urllib`` from the first mirror that works, checked against their md5 (only a
complete, verified file gets its real name) and unpacked exactly where torchvision would put them.
Nothing is fetched unless ``download=True``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from reprog_core.data.base import DatasetError
from reprog_core.data.sources import SOURCES, Remote, how_to_get

_USER_AGENT = "reprog-core (+https://pytorch.org/vision)"
_DOWNLOAD_TIMEOUT_S = 60


def fetch_url(url: str, dest: Path) -> None:
    """Copy ``url`` to ``dest`` byte for byte. The only function here that touches the network
    (tests replace it)."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with (
        urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as response,
        open(dest, "wb") as out,
    ):
        shutil.copyfileobj(response, out, length=1 << 20)


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_checked(name: str, remote: Remote, folder: Path) -> Path:
    """``folder/remote.filename`` with the right md5, fetched from the first mirror that works."""
    dest = folder / remote.filename
    if dest.is_file() and md5sum(dest) == remote.md5:
        return dest  # downloaded earlier, e.g. by torchvision: do not fetch 100s of MB again
    folder.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    errors = []
    for url in remote.urls:
        try:
            fetch_url(url, partial)
        # URLError, HTTPError and timeouts are OSErrors; a cut connection is an IncompleteRead.
        except (OSError, ValueError, http.client.HTTPException) as exc:
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
            partial.unlink(missing_ok=True)
            continue
        got = md5sum(partial)
        if got != remote.md5:
            partial.unlink(missing_ok=True)
            errors.append(f"{url}: md5 {got} does not match the expected {remote.md5}")
            continue
        os.replace(partial, dest)  # only a complete, verified file ever gets the real name
        return dest
    raise DatasetError(
        f"{name}: downloading {remote.filename} into {folder} failed ({'; '.join(errors)}). "
        "This machine may have no network: fetch the file elsewhere and place it there, "
        f"or place the unpacked files in the layout {how_to_get(name)}"
    )


def extract(name: str, archive: Path, into: Path) -> None:
    """Unpack a .tar[.gz] or .zip ``archive`` into ``into`` (no member may land outside it)."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(into)  # zipfile strips absolute paths and '..' itself
        else:
            with tarfile.open(archive) as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(into, filter="data")
                else:  # Python < 3.10.12 has no extraction filters
                    _check_tar_members(tf, into)
                    tf.extractall(into)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{name}: cannot unpack {archive}: {exc}; delete it and retry") from exc


def _check_tar_members(tf: tarfile.TarFile, into: Path) -> None:
    base = into.resolve()
    for member in tf.getmembers():
        if not (base / member.name).resolve().is_relative_to(base):
            raise tarfile.TarError(f"member {member.name!r} would land outside {into}")


def present(path: Path, gz_ok: bool) -> Path | None:
    """``path``, else ``path.gz`` when ``gz_ok``, whichever exists; None if neither does."""
    if path.exists():
        return path
    gz = path.with_name(path.name + ".gz")
    return gz if gz_ok and gz.exists() else None


def locate(name: str, root: Path | None, download: bool) -> Path:
    """The set's folder under ``root``, downloading first when asked and files are missing."""
    if root is None:
        raise DatasetError(
            f"{name}: no data root given; pass --data-root DIR or set REPROG_DATA_ROOT"
        )
    src = SOURCES[name]
    folder = root / src.folder if src.folder else root

    def missing() -> list[Path]:
        return [folder / r for r in src.required if present(folder / r, src.gz_ok) is None]

    if missing() and download:
        for remote in src.remotes:
            archive = fetch_checked(name, remote, folder)
            if remote.extract:
                extract(name, archive, folder)
    lacking = missing()
    if lacking:
        first = lacking[0]
        also = f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""
        after = (
            " after downloading: the archive did not have the expected layout" if download else ""
        )
        raise DatasetError(
            f"{name}: looked for {first}{also} under the data root {root} and did not find it"
            f"{after}. To fix: point --data-root DIR or $REPROG_DATA_ROOT at the folder that holds "
            "the files; or pass --download (download=True) on a machine with network access; or "
            f"place the official files under {root} in this layout: {how_to_get(name)}"
        )
    return folder
