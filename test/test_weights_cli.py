"""`mgdepth weights`: downloads from a local HTTP server (Range support, a cut connection), checksums, the cache."""

import hashlib
import io
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from torchvision.models import optical_flow

from mgdepth_core.cli import main
from mgdepth_core.models.resnet import IMAGENET_WEIGHTS
from mgdepth_core.official_weights import REGISTRY, OfficialWeights

PAYLOAD = bytes(range(256)) * 1200  # 300 kB


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-`` when ``server.ranges``; cuts each path in
    ``server.cut_once`` halfway through its body, once."""

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range") and server.ranges:
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        rest = body[start:]
        if self.path in server.cut_once:
            server.cut_once.discard(self.path)
            rest = rest[:len(rest) // 2]
            self.close_connection = True
        self.wfile.write(rest)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.cut_once, httpd.ranges = {}, [], set(), True
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Point the mgdepth cache and the torch hub cache into tmp_path; no mirror."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("MGDEPTH_WEIGHTS_MIRROR", raising=False)
    return {"mgdepth": tmp_path / "xdg" / "mgdepth" / "weights", "hub": tmp_path / "torch" / "hub" / "checkpoints"}


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _entry(monkeypatch, url: str, **fields) -> OfficialWeights:
    entry = OfficialWeights("test-weights", "a test file", url, fields.pop("filename", "tiny.pth"), "tests", **fields)
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    return entry


def _get(capsys, *args) -> tuple[int, str, str]:
    code = main(["weights", "get", *args, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out.strip(), err


@pytest.mark.parametrize("torch_hub", [False, True])
def test_good_checksum_lands_in_the_cache_and_the_second_get_is_a_cache_hit(server, caches, monkeypatch, capsys,
                                                                           torch_hub):
    server.files["/tiny.pth"] = PAYLOAD
    _entry(monkeypatch, f"{server.url}/tiny.pth", sha256=hashlib.sha256(PAYLOAD).hexdigest(), torch_hub=torch_hub)
    code, out, err = _get(capsys, "test-weights")
    expected = (caches["hub"] if torch_hub else caches["mgdepth"]) / "tiny.pth"
    assert code == 0, err
    assert out == str(expected) and expected.read_bytes() == PAYLOAD
    assert "matches the published SHA-256" in err
    assert _files(expected.parent) == ["tiny.pth"]  # no .part left
    assert len(server.requests) == 1

    code, out_again, _ = _get(capsys, "test-weights")
    assert code == 0 and out_again == out
    assert len(server.requests) == 1, "a cached file must not touch the network"
    assert main(["weights", "list"]) == 0
    assert f"installed: {expected}" in capsys.readouterr().out


def test_bad_checksum_errors_and_leaves_nothing(server, caches, monkeypatch, capsys):
    server.files["/tiny.pth"] = PAYLOAD
    _entry(monkeypatch, f"{server.url}/tiny.pth", sha256=hashlib.sha256(b"other bytes").hexdigest())
    code, out, err = _get(capsys, "test-weights")
    assert code == 1 and out == ""
    assert "checksum mismatch" in err and "nothing was installed" in err
    assert _files(caches["mgdepth"]) == []


def test_mirror_serves_a_real_entry_and_its_published_prefix_is_enforced(server, caches, monkeypatch, capsys):
    filename = Path(optical_flow.Raft_Small_Weights.DEFAULT.url).name
    server.files[f"/mirror/{filename}"] = PAYLOAD  # not torchvision's file: its SHA-256 does not start 01064c6d
    monkeypatch.setenv("MGDEPTH_WEIGHTS_MIRROR", f"{server.url}/mirror/")
    code, _, err = _get(capsys, "raft-small")
    assert server.requests == [(f"/mirror/{filename}", None)]
    assert code == 1 and "expected SHA-256 01064c6d" in err
    assert _files(caches["hub"]) == []


@pytest.mark.parametrize("server_honours_range", [True, False])
def test_interrupted_download_resumes_from_the_part(server, caches, monkeypatch, capsys, server_honours_range):
    server.files["/tiny.pth"] = PAYLOAD
    server.cut_once.add("/tiny.pth")
    server.ranges = server_honours_range
    _entry(monkeypatch, f"{server.url}/tiny.pth", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    code, out, err = _get(capsys, "test-weights")
    half = len(PAYLOAD) // 2
    assert code == 1 and out == ""
    assert f"interrupted after {half} of {len(PAYLOAD)} bytes" in err and "run the same command again" in err
    assert _files(caches["mgdepth"]) == ["tiny.pth.part"]
    assert (caches["mgdepth"] / "tiny.pth.part").read_bytes() == PAYLOAD[:half]

    code, out, err = _get(capsys, "test-weights")
    assert code == 0, err
    assert server.requests[-1] == ("/tiny.pth", f"bytes={half}-")
    assert Path(out).read_bytes() == PAYLOAD
    assert _files(caches["mgdepth"]) == ["tiny.pth"]


def test_a_part_longer_than_the_file_is_discarded(server, caches, monkeypatch, capsys):
    server.files["/tiny.pth"] = PAYLOAD
    _entry(monkeypatch, f"{server.url}/tiny.pth", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    caches["mgdepth"].mkdir(parents=True)
    (caches["mgdepth"] / "tiny.pth.part").write_bytes(PAYLOAD + b"stale tail")
    code, out, err = _get(capsys, "test-weights")
    assert code == 0, err
    assert server.requests == [("/tiny.pth", f"bytes={len(PAYLOAD) + 10}-"), ("/tiny.pth", None)]
    assert Path(out).read_bytes() == PAYLOAD


def test_offline_says_so(caches, monkeypatch, capsys):
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _entry(monkeypatch, f"http://127.0.0.1:{port}/tiny.pth")
    code, out, err = _get(capsys, "test-weights")
    assert code == 1 and out == ""
    assert f"cannot reach http://127.0.0.1:{port}/tiny.pth" in err and "Offline?" in err and "--from" in err
    assert _files(caches["mgdepth"]) == []


def test_unknown_name_lists_the_names(caches, capsys):
    code, _, err = _get(capsys, "no-such-weights")
    assert code == 1
    assert "unknown weights 'no-such-weights'" in err
    for name in ("manydepth-kitti-mr", "manydepth-cityscapes-mr", "manydepth2-kitti-mr", "raft-small"):
        assert name in err


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_folder_zip_is_extracted_and_the_weights_folder_printed(server, caches, monkeypatch, capsys):
    server.files["/KITTI_MR.zip"] = _zip({"KITTI_MR/encoder.pth": PAYLOAD, "KITTI_MR/depth.pth": b"depth"})
    _entry(monkeypatch, f"{server.url}/KITTI_MR.zip", filename="KITTI_MR.zip", folder=True)
    code, out, err = _get(capsys, "test-weights")
    assert code == 0, err
    assert out == str(caches["mgdepth"] / "test-weights" / "KITTI_MR")
    assert (Path(out) / "encoder.pth").read_bytes() == PAYLOAD
    assert "no published SHA-256" in err
    assert _files(caches["mgdepth"]) == ["test-weights/KITTI_MR/depth.pth", "test-weights/KITTI_MR/encoder.pth"]


def test_damaged_zip_is_rejected(server, caches, monkeypatch, capsys):
    archive = bytearray(_zip({"W/encoder.pth": PAYLOAD}))
    archive[len(archive) // 2] ^= 0xFF  # inside the stored member: its CRC-32 no longer matches
    server.files["/W.zip"] = bytes(archive)
    _entry(monkeypatch, f"{server.url}/W.zip", filename="W.zip", folder=True)
    code, out, err = _get(capsys, "test-weights")
    assert code == 1 and out == "" and "not a readable zip" in err
    assert _files(caches["mgdepth"]) == []


def test_google_drive_entries_install_from_a_downloaded_file(caches, tmp_path, capsys):
    code, _, err = _get(capsys, "gmflow-sintel")
    assert code == 1 and "needs a browser" in err and REGISTRY["gmflow-sintel"].url in err

    downloaded = tmp_path / "pretrained.zip"
    downloaded.write_bytes(_zip({"pretrained/gmflow_things-e9887eda.pth": b"x",
                                 "pretrained/gmflow_sintel-0c07dcb3.pth": PAYLOAD}))
    code, out, err = _get(capsys, "gmflow-sintel", "--from", str(downloaded))
    assert code == 0, err
    assert out == str(caches["hub"] / "gmflow_sintel-0c07dcb3.pth") and Path(out).read_bytes() == PAYLOAD
    assert downloaded.exists()


def test_registry_holds_the_official_urls_and_torchvision_prefixes():
    release = "https://storage.googleapis.com/niantic-lon-static/research/manydepth/models"
    assert REGISTRY["manydepth-kitti-mr"].url == f"{release}/KITTI_MR.zip"
    assert REGISTRY["manydepth-cityscapes-mr"].url == f"{release}/CityScapes_MR.zip"
    assert REGISTRY["manydepth2-kitti-mr"].url.startswith("https://drive.google.com/drive/folders/")
    resnet18 = REGISTRY["resnet18-imagenet"]
    assert resnet18.url == IMAGENET_WEIGHTS[18].url and resnet18.torch_hub
    assert resnet18.sha256 == "f37072fd" and resnet18.url.endswith(f"-{resnet18.sha256}.pth")
    assert all(REGISTRY[f"resnet{n}-imagenet"].url == IMAGENET_WEIGHTS[n].url for n in IMAGENET_WEIGHTS)  # log hint
    assert all(entry.url.startswith("https://") for entry in REGISTRY.values())
    assert all(not entry.sha256 for entry in REGISTRY.values() if not entry.torch_hub or not entry.fetchable)
