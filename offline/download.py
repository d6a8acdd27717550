"""Resumable HTTP(S) downloads and the ALM-ADD test set.

:func:`download` writes into ``<dest>.part``, resumes an interrupted transfer with a Range request,
verifies an optional SHA-256 and renames the finished file into place, so ``dest`` only ever holds
a complete, verified file. :func:`download_alm_add` fetches the ALM-ADD repository archive, extracts
it without letting any member escape the destination, and checks that the ``alm_add`` reader can
read the result before putting it in place.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from offline.datasets import alm_add
from streamdet.errors import DatasetError

# A branch archive changes whenever the branch does and GitHub does not promise byte-identical
# archives even for one commit, so no SHA-256 can be pinned for it; the content is checked instead
# (label/ and audio/ readable by the alm_add reader, every listed file present).
ALM_ADD_URL = "https://github.com/xieyuankun/ALM-ADD/archive/refs/heads/main.zip"
ALM_ADD_DIRNAME = "ALM-ADD"
_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, sha256: str | None, url: str) -> None:
    if sha256 is None:
        return
    actual = sha256_of(path)
    if actual != sha256.lower():
        path.unlink()
        raise DatasetError(
            f"{url}: SHA-256 mismatch (expected {sha256.lower()}, got {actual}); deleted {path}"
        )


def _fetch(url: str, partial: Path, timeout: float) -> None:
    """Append the rest of ``url`` to ``partial``, from its current size (0 if absent)."""
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        # 416: the partial file already holds every byte (or more than exists); start over only
        # in the second case, which the final checksum or size check would otherwise miss.
        if error.code == 416 and offset:
            match = re.fullmatch(r"bytes \*/(\d+)", error.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == offset:
                return
            partial.unlink()
            return _fetch(url, partial, timeout)
        raise DatasetError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise DatasetError(f"{url}: download failed ({error})") from error
    with response:
        mode = "ab"
        if offset and response.status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                raise DatasetError(
                    f"{url}: server answered range {offset}- with {response.headers.get('Content-Range')!r}"
                )
        elif offset:
            mode = "wb"  # the server ignored the Range header and sent the whole file: start over
        expected = response.headers.get("Content-Length")
        received = 0
        try:
            with partial.open(mode) as handle:
                while block := response.read(_CHUNK):
                    handle.write(block)
                    received += len(block)
        except (OSError, http.client.HTTPException) as error:
            # http.client reports a connection closed early as IncompleteRead, not an OSError.
            raise DatasetError(
                f"{url}: download interrupted after {received} bytes ({error}); rerun to resume"
            ) from error
    if expected is not None and received != int(expected):
        raise DatasetError(f"{url}: got {received} of {expected} bytes; rerun to resume")


def download(url: str, dest: Path, sha256: str | None = None, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` unless it is already there; resume a ``dest.part`` left behind.

    With ``sha256`` the finished file (or an existing ``dest``) is verified; a mismatching file is
    deleted and :class:`DatasetError` raised. Network failures raise :class:`DatasetError` and
    keep the partial file for the next attempt; folders created for ``dest`` that are still empty
    after a failure are removed.
    """
    dest = Path(dest)
    if dest.is_file():
        _verify(dest, sha256, url)
        return dest
    created = _make_parents(dest)
    partial = dest.with_name(dest.name + ".part")
    try:
        _fetch(url, partial, timeout)
        _verify(partial, sha256, url)
    except BaseException:
        _remove_empty(created)  # a failed first attempt leaves no empty folders behind
        raise
    partial.replace(dest)
    return dest


def _make_parents(path: Path) -> list[Path]:
    """Create the missing folders above ``path``; returns those created, innermost first."""
    missing = [folder for folder in path.parents if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders (innermost first) that are still empty; a kept ``.part`` keeps its folder."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _safe_members(archive: zipfile.ZipFile, archive_path: Path) -> list[zipfile.ZipInfo]:
    """Every member, after checking that none would land outside the extraction folder."""
    members = archive.infolist()
    for member in members:
        name = PurePosixPath(member.filename.replace("\\", "/"))
        is_link = (member.external_attr >> 16) & 0o170000 == 0o120000
        if name.is_absolute() or ".." in name.parts or re.match(r"[A-Za-z]:", member.filename) or is_link:
            raise DatasetError(f"{archive_path}: refusing unsafe archive member {member.filename!r}")
    return members


def _find_dataset_root(tree: Path) -> Path:
    # GitHub archives wrap the repository in one folder (ALM-ADD-main/); look a few levels down.
    for depth in range(4):
        for candidate in sorted(tree.glob("/".join(["*"] * depth)) if depth else [tree]):
            if (candidate / "label").is_dir() and (candidate / "audio").is_dir():
                return candidate
    raise DatasetError(f"no folder with label/ and audio/ in the extracted archive under {tree}")


def download_alm_add(dest: Path, url: str = ALM_ADD_URL, *, timeout: float = 60.0) -> Path:
    """Download and extract ALM-ADD; returns ``dest/ALM-ADD`` (holding ``label/`` and ``audio/``).

    Does nothing but check when ``dest/ALM-ADD`` is already readable. The archive is deleted once
    its content is in place; an archive that fails the checks is kept for inspection.
    """
    dest = Path(dest)
    final = dest / ALM_ADD_DIRNAME
    if final.is_dir():
        try:
            alm_add(final)
            return final
        except DatasetError:
            pass  # an incomplete earlier attempt: fetch again and replace it
    archive_path = download(url, dest / f"{ALM_ADD_DIRNAME}.zip", timeout=timeout)
    staging = Path(tempfile.mkdtemp(prefix=".alm-add-", dir=dest))
    try:
        try:
            with zipfile.ZipFile(archive_path) as archive:
                archive.extractall(staging, members=_safe_members(archive, archive_path))
        except zipfile.BadZipFile as error:
            raise DatasetError(f"{archive_path}: not a zip archive ({error})") from error
        root = _find_dataset_root(staging)
        alm_add(root)
        if final.exists():
            shutil.rmtree(final)
        root.replace(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive_path.unlink()
    return final
