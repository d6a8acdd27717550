"""Resumable downloads and the ALM-ADD fetcher, against a local HTTP server (never the network)."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from offline.datasets import alm_add
from offline.download import download, download_alm_add
from streamdet.errors import StreamdetError


@dataclass
class Site:
    """What the local server serves, and what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    honour_range: bool = True
    cut_after: int | None = None  # announce the full length but close after this many bytes
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    sent: int = 0
    base: str = ""


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            wanted = self.headers.get("Range")
            site.requests.append((self.path, wanted))
            body = site.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if wanted and site.honour_range:
                start = int(wanted.removeprefix("bytes=").removesuffix("-"))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if site.cut_after is not None:
                payload = payload[: site.cut_after]
                self.close_connection = True
            # Count before writing: the client may assert as soon as it has read the last byte.
            site.sent += len(payload)
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    # urllib honours proxy variables; a local server must be reached directly.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    state = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval keeps shutdown() (once per test) from waiting half a second.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


BLOB = bytes(range(256)) * 40  # 10,240 bytes
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()


def test_download_verifies_and_renames(site: Site, tmp_path: Path) -> None:
    site.files["/blob.bin"] = BLOB
    dest = download(f"{site.base}/blob.bin", tmp_path / "sub" / "blob.bin", BLOB_SHA)
    assert dest.read_bytes() == BLOB
    assert not (tmp_path / "sub" / "blob.bin.part").exists()
    assert site.requests == [("/blob.bin", None)]
    # Already there and verified: no second request.
    download(f"{site.base}/blob.bin", dest, BLOB_SHA)
    assert len(site.requests) == 1


def test_resume_requests_only_the_rest(site: Site, tmp_path: Path) -> None:
    site.files["/blob.bin"] = BLOB
    (tmp_path / "blob.bin.part").write_bytes(BLOB[:4000])
    dest = download(f"{site.base}/blob.bin", tmp_path / "blob.bin", BLOB_SHA)
    assert dest.read_bytes() == BLOB
    assert site.requests == [("/blob.bin", "bytes=4000-")]
    assert site.sent == len(BLOB) - 4000


def test_server_ignoring_range_restarts(site: Site, tmp_path: Path) -> None:
    site.files["/blob.bin"] = BLOB
    site.honour_range = False
    (tmp_path / "blob.bin.part").write_bytes(b"stale prefix from another file")
    dest = download(f"{site.base}/blob.bin", tmp_path / "blob.bin", BLOB_SHA)
    assert dest.read_bytes() == BLOB


def test_complete_part_file_gets_416(site: Site, tmp_path: Path) -> None:
    site.files["/blob.bin"] = BLOB
    (tmp_path / "blob.bin.part").write_bytes(BLOB)
    assert download(f"{site.base}/blob.bin", tmp_path / "blob.bin", BLOB_SHA).read_bytes() == BLOB
    assert site.sent == 0


def test_interrupted_transfer_keeps_part_then_resumes(site: Site, tmp_path: Path) -> None:
    site.files["/blob.bin"] = BLOB
    site.cut_after = 3000
    with pytest.raises(StreamdetError, match="rerun to resume"):
        download(f"{site.base}/blob.bin", tmp_path / "blob.bin", BLOB_SHA)
    assert (tmp_path / "blob.bin.part").read_bytes() == BLOB[:3000]
    assert not (tmp_path / "blob.bin").exists()
    site.cut_after = None
    assert download(f"{site.base}/blob.bin", tmp_path / "blob.bin", BLOB_SHA).read_bytes() == BLOB
    assert site.requests[-1] == ("/blob.bin", "bytes=3000-")


def test_checksum_mismatch_deletes_file(site: Site, tmp_path: Path) -> None:
    site.files["/blob.bin"] = BLOB
    with pytest.raises(StreamdetError, match="SHA-256 mismatch"):
        download(f"{site.base}/blob.bin", tmp_path / "blob.bin", "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_reported(site: Site, tmp_path: Path) -> None:
    with pytest.raises(StreamdetError, match="HTTP 404"):
        download(f"{site.base}/absent.zip", tmp_path / "absent.zip")
    assert list(tmp_path.iterdir()) == []


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


ALM_MEMBERS = {
    "ALM-ADD-main/README.md": b"# ALM-ADD\n",
    "ALM-ADD-main/label/A01-AudioLM.txt": b"a_real.wav real\nb_fake.wav fake\n",
    "ALM-ADD-main/audio/AudioLM/a_real.wav": b"RIFF",
    "ALM-ADD-main/audio/AudioLM/b_fake.wav": b"RIFF",
}


def test_download_alm_add(site: Site, tmp_path: Path) -> None:
    site.files["/main.zip"] = _zip(ALM_MEMBERS)
    root = download_alm_add(tmp_path / "data", f"{site.base}/main.zip")
    assert root == tmp_path / "data" / "ALM-ADD"
    conditions = alm_add(root)
    assert [u.label for u in conditions["A01"]] == [0, 1]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["ALM-ADD"]  # archive and staging gone
    # A second call finds it readable and fetches nothing.
    download_alm_add(tmp_path / "data", f"{site.base}/main.zip")
    assert len(site.requests) == 1


@pytest.mark.parametrize("evil", ["../evil.txt", "ALM-ADD-main/../../evil.txt", "/tmp/evil-absolute.txt"])
def test_download_alm_add_rejects_path_traversal(site: Site, tmp_path: Path, evil: str) -> None:
    site.files["/main.zip"] = _zip({**ALM_MEMBERS, evil: b"owned"})
    with pytest.raises(StreamdetError, match="unsafe archive member"):
        download_alm_add(tmp_path / "data", f"{site.base}/main.zip")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "data" / "ALM-ADD").exists()
    # Nothing was extracted at all: only the archive is left, for inspection.
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["ALM-ADD.zip"]


def test_download_alm_add_needs_label_and_audio(site: Site, tmp_path: Path) -> None:
    site.files["/main.zip"] = _zip({"ALM-ADD-main/audio/AudioLM/a_real.wav": b"RIFF"})
    with pytest.raises(StreamdetError, match="no folder with label/ and audio/"):
        download_alm_add(tmp_path, f"{site.base}/main.zip")
    assert not (tmp_path / "ALM-ADD").exists()


def test_download_alm_add_checks_listed_audio(site: Site, tmp_path: Path) -> None:
    members = {k: v for k, v in ALM_MEMBERS.items() if not k.endswith("b_fake.wav")}
    site.files["/main.zip"] = _zip(members)
    with pytest.raises(StreamdetError, match="b_fake.wav"):
        download_alm_add(tmp_path, f"{site.base}/main.zip")
    assert not (tmp_path / "ALM-ADD").exists()


def test_download_alm_add_not_a_zip(site: Site, tmp_path: Path) -> None:
    site.files["/main.zip"] = b"<html>rate limited</html>"
    with pytest.raises(StreamdetError, match="not a zip archive"):
        download_alm_add(tmp_path, f"{site.base}/main.zip")


def test_failed_download_leaves_no_folders_behind(site: Site, tmp_path: Path) -> None:
    with pytest.raises(StreamdetError, match="HTTP 404"):
        download(f"{site.base}/absent.bin", tmp_path / "new" / "deeper" / "absent.bin")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_keeps_its_folder_for_the_part_file(site: Site, tmp_path: Path) -> None:
    site.files["/blob.bin"] = BLOB
    site.cut_after = 3000
    with pytest.raises(StreamdetError, match="rerun to resume"):
        download(f"{site.base}/blob.bin", tmp_path / "new" / "blob.bin", BLOB_SHA)
    assert (tmp_path / "new" / "blob.bin.part").stat().st_size == 3000


def test_download_command_from_unreachable_url_leaves_nothing(tmp_path: Path, capsys) -> None:
    from offline.cli import main

    dest = tmp_path / "data"
    assert main(["download", "alm-add", "--dest", str(dest), "--url", "http://127.0.0.1:9/main.zip"]) == 2
    assert "download failed" in capsys.readouterr().err
    assert not dest.exists()
