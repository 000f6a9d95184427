"""The weights registry, cache and downloads, against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import logging
import random
import re
import socket
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
import pytest

from swinface.weights import download as dl
from swinface.weights import registry
from swinface.weights.registry import WeightsError, WeightsSpec

DATA = random.Random(0).randbytes(200_000)
SHA = hashlib.sha256(DATA).hexdigest()


# ---------------------------------------------------------------- local server


@dataclass
class ServerState:
    """What the server serves, how it misbehaves per path, and what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    # path -> "normal" | "drop" | "drop_once" | "ignore_range" | "drop_once_ignore_range"
    modes: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)
    base: str = ""

    def url(self, path: str) -> str:
        return self.base + path

    def ranges(self, path: str) -> list[str | None]:
        return [r for p, r in self.requests if p == path]


class Handler(http.server.BaseHTTPRequestHandler):
    server: http.server.ThreadingHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        asked = self.headers.get("Range")
        state.requests.append((self.path, asked))
        data = state.files.get(self.path)
        mode = state.modes.get(self.path, "normal")
        if data is None:
            self.send_error(404)
            return
        start = 0
        if asked and "ignore_range" not in mode:
            start = int(re.fullmatch(r"bytes=(\d+)-", asked)[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        drop = mode == "drop" or ("drop_once" in mode and self.path not in state.dropped)
        if drop:
            # Promise the whole body, send half, hang up.
            state.dropped.add(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[ServerState]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = ServerState(base=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache, a registry whose additions vanish after the test, and no proxies."""
    monkeypatch.setenv("SWINFACE_HOME", str(tmp_path / "home"))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return tmp_path / "home"


def add_spec(name: str, urls: list[str], *, sha256: str | None = SHA, **kw) -> WeightsSpec:
    return registry.register(
        WeightsSpec(name=name, filename=f"{name}.pt", urls=tuple(urls), sha256=sha256, **kw)
    )


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/nothing.pt"


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".partial"))


# ---------------------------------------------------------------- registry


def test_registry_basics(home: Path) -> None:
    assert registry.DEFAULT_WEIGHTS in [s.name for s in registry.list_specs()]
    published = registry.get_spec(registry.DEFAULT_WEIGHTS)
    assert published.sha256 is None and published.verify_threshold is None
    assert published.sources[0].kind == "gdrive-folder"
    assert registry.cache_dir() == home / "weights"
    assert registry.cached_path(published) == home / "weights" / published.name / published.filename
    with pytest.raises(WeightsError, match="swinface-published"):
        registry.get_spec("no-such-weights")
    add_spec("dup", ["https://example.org/a.pt"])
    with pytest.raises(ValueError, match="already registered"):
        add_spec("dup", ["https://example.org/a.pt"])
    with pytest.raises(ValueError, match="not understood"):
        WeightsSpec(name="bad", filename="bad.pt", urls=("ftp://example.org/a.pt",))
    with pytest.raises(ValueError, match="sha256"):
        WeightsSpec(name="bad", filename="bad.pt", urls=("https://x/a",), sha256="abc")


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWINFACE_HOME")
    assert registry.cache_dir() == Path(platformdirs.user_cache_dir("swinface")) / "weights"


# ---------------------------------------------------------------- HTTP downloads


def test_good_download(server: ServerState) -> None:
    server.files["/w.pt"] = DATA
    spec = add_spec("good", [server.url("/w.pt")], size=len(DATA))
    path = dl.download("good", progress=False)
    assert path == registry.cached_path(spec)
    assert path.read_bytes() == DATA
    assert leftovers(path) == []
    assert path.with_name(path.name + ".sha256").read_text().split()[0] == SHA
    dl.download("good", progress=False)  # cached and intact: no second request
    assert len(server.requests) == 1


def test_unknown_hash_records_sidecar(server: ServerState) -> None:
    server.files["/w.pt"] = DATA
    add_spec("nohash", [server.url("/w.pt")], sha256=None)
    path = dl.download("nohash", progress=False)
    assert path.with_name(path.name + ".sha256").read_text().split()[0] == SHA
    assert dl.verify_cached("nohash") == path


def test_wrong_checksum(server: ServerState) -> None:
    server.files["/w.pt"] = DATA
    wrong = hashlib.sha256(b"something else").hexdigest()
    spec = add_spec("wrong", [server.url("/w.pt")], sha256=wrong)
    with pytest.raises(WeightsError) as info:
        dl.download(spec, progress=False)
    message = str(info.value)
    assert wrong in message and SHA in message and "wrong" in message
    assert server.url("/w.pt") in message
    final = registry.cached_path(spec)
    assert not final.exists() and leftovers(final) == []


def test_wrong_size_offered(server: ServerState) -> None:
    server.files["/w.pt"] = DATA
    add_spec("size", [server.url("/w.pt")], size=len(DATA) + 1)
    with pytest.raises(WeightsError, match=f"offers {len(DATA)} bytes"):
        dl.download("size", progress=False)


def test_interrupted_then_resumed_next_call(
    server: ServerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dl, "RESUME_ATTEMPTS", 1)
    server.files["/w.pt"] = DATA
    server.modes["/w.pt"] = "drop_once"
    spec = add_spec("resume", [server.url("/w.pt")])
    final = registry.cached_path(spec)
    with pytest.raises(WeightsError, match="connection closed"):
        dl.download(spec, progress=False)
    partial = final.with_name(final.name + ".partial")
    half = len(DATA) // 2
    assert partial.stat().st_size == half and not final.exists()
    assert dl.download(spec, progress=False).read_bytes() == DATA
    assert server.ranges("/w.pt") == [None, f"bytes={half}-"]
    assert leftovers(final) == []


def test_interrupted_resumed_within_one_call(server: ServerState) -> None:
    server.files["/w.pt"] = DATA
    server.modes["/w.pt"] = "drop_once"
    add_spec("resume1", [server.url("/w.pt")])
    assert dl.download("resume1", progress=False).read_bytes() == DATA
    assert server.ranges("/w.pt") == [None, f"bytes={len(DATA) // 2}-"]


def test_server_ignoring_range_restarts(
    server: ServerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dl, "RESUME_ATTEMPTS", 1)
    server.files["/w.pt"] = DATA
    server.modes["/w.pt"] = "drop_once_ignore_range"
    spec = add_spec("norange", [server.url("/w.pt")])
    with pytest.raises(WeightsError):
        dl.download(spec, progress=False)
    assert dl.download(spec, progress=False).read_bytes() == DATA
    assert server.ranges("/w.pt") == [None, f"bytes={len(DATA) // 2}-"]


def test_404_falls_through_to_next_source(server: ServerState) -> None:
    server.files["/mirror.pt"] = DATA
    add_spec("fallback", [server.url("/gone.pt"), server.url("/mirror.pt")])
    assert dl.download("fallback", progress=False).read_bytes() == DATA
    assert [p for p, _ in server.requests] == ["/gone.pt", "/mirror.pt"]


def test_all_sources_fail(server: ServerState) -> None:
    dead = closed_port_url()
    add_spec("broken", [server.url("/gone.pt"), dead])
    with pytest.raises(WeightsError) as info:
        dl.download("broken", progress=False)
    message = str(info.value)
    assert server.url("/gone.pt") in message and "404" in message
    assert dead in message and "cannot connect" in message
    assert "swinface weights import PATH --name broken" in message


@pytest.mark.parametrize("sha256", [SHA, None], ids=["pinned-hash", "sidecar-hash"])
def test_corrupted_cache_is_downloaded_again(
    server: ServerState, sha256: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    server.files["/w.pt"] = DATA
    spec = add_spec("corrupt", [server.url("/w.pt")], sha256=sha256)
    path = dl.download(spec, progress=False)
    damaged = bytearray(DATA)
    damaged[1000] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert dl.verify_cached(spec) is None
    with caplog.at_level(logging.WARNING, logger="swinface.weights.download"):
        again = dl.download(spec, progress=False)
    assert again.read_bytes() == DATA
    assert "damaged" in caplog.text
    assert len(server.requests) == 2


def test_force_downloads_again(server: ServerState) -> None:
    server.files["/w.pt"] = DATA
    add_spec("force", [server.url("/w.pt")])
    dl.download("force", progress=False)
    dl.download("force", force=True, progress=False)
    assert len(server.requests) == 2


# ---------------------------------------------------------------- other sources


def test_package_and_file_sources(tmp_path: Path) -> None:
    # py.typed is an empty file shipped inside swinface.
    empty = hashlib.sha256(b"").hexdigest()
    add_spec(
        "pkg", ["package://swinface/no-such-file", "package://swinface/py.typed"], sha256=empty
    )
    assert dl.download("pkg", progress=False).read_bytes() == b""
    mirror = tmp_path / "mirror.pt"
    mirror.write_bytes(DATA)
    add_spec("local", [mirror.as_uri()])
    assert dl.download("local", progress=False).read_bytes() == DATA
    assert mirror.read_bytes() == DATA


def fake_gdown(data: bytes, calls: list[tuple]) -> types.ModuleType:
    """A stand-in for gdown: a folder holding `w.pt` (and a readme), files written locally."""
    module = types.ModuleType("gdown")

    def download_folder(*, id, output, quiet=False, skip_download=False, **kw):
        calls.append(("folder", id, skip_download))
        return [
            types.SimpleNamespace(id="README", path="readme.txt", local_path=f"{output}/r"),
            types.SimpleNamespace(id="FILE-ID", path="w.pt", local_path=f"{output}/w.pt"),
        ]

    def download(*, id, output, quiet=False, **kw):
        calls.append(("file", id))
        Path(output).write_bytes(data)
        return output

    module.download_folder = download_folder
    module.download = download
    return module


@pytest.mark.parametrize("served", [DATA, b"not the weights"], ids=["good", "bad-hash"])
def test_gdrive_folder_source(monkeypatch: pytest.MonkeyPatch, served: bytes) -> None:
    calls: list[tuple] = []
    monkeypatch.setitem(sys.modules, "gdown", fake_gdown(served, calls))
    spec = registry.register(
        WeightsSpec(name="drive", filename="w.pt", urls=(), sha256=SHA, gdrive_folder="FOLDER")
    )
    final = registry.cached_path(spec)
    if served == DATA:
        assert dl.download(spec, progress=False).read_bytes() == DATA
    else:
        with pytest.raises(WeightsError, match="checksum mismatch"):
            dl.download(spec, progress=False)
        assert not final.exists()
    assert calls == [("folder", "FOLDER", True), ("file", "FILE-ID")]
    assert [p.name for p in final.parent.iterdir() if not p.name.endswith(".lock")] == (
        ["w.pt", "w.pt.sha256"] if served == DATA else []
    )


def test_gdrive_file_missing_from_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gdown", fake_gdown(DATA, []))
    add_spec("drive2", ["gdrive-folder:FOLDER/other.pt"])
    with pytest.raises(WeightsError, match="no other.pt in the Drive folder; it holds readme.txt"):
        dl.download("drive2", progress=False)


# ---------------------------------------------------------------- import


def test_import_weights(tmp_path: Path, home: Path) -> None:
    mine = tmp_path / "fetched-by-hand.pt"
    mine.write_bytes(DATA)
    before = mine.stat()
    spec = add_spec("imp", ["https://example.org/imp.pt"])
    imported = dl.import_weights(mine, name="imp")
    path = imported.path
    assert path == registry.cached_path(spec) and path.read_bytes() == DATA
    assert imported.name == "imp" and imported.verified and imported.sha256 == SHA
    assert dl.verify_cached(spec) == path
    assert leftovers(path) == []
    loose = dl.import_weights(mine)
    assert loose.name == "fetched-by-hand" and not loose.verified and loose.spec is None
    assert loose.path == home / "weights" / "imported" / "fetched-by-hand" / mine.name
    assert loose.path.read_bytes() == DATA
    assert mine.read_bytes() == DATA and mine.stat().st_mtime_ns == before.st_mtime_ns


def test_import_without_a_name_is_usable_by_its_stem(tmp_path: Path) -> None:
    mine = tmp_path / "my model.pt"
    mine.write_bytes(DATA)
    imported = dl.import_weights(mine)
    assert imported.name == "my-model"
    assert dl.list_imported() == {"my-model": imported.path}
    assert dl.resolve_weights("my-model") == (imported.path, None)
    # A file changed in the cache after import is caught, not used.
    imported.path.write_bytes(b"tampered")
    with pytest.raises(WeightsError, match="changed on disk"):
        dl.resolve_weights("my-model")


def test_import_by_registered_file_name_becomes_those_weights(tmp_path: Path) -> None:
    spec = add_spec("byfile", ["https://example.org/byfile.pt"])
    mine = tmp_path / spec.filename
    mine.write_bytes(DATA)
    imported = dl.import_weights(mine)
    assert imported.spec is spec and imported.path == registry.cached_path(spec)


def test_import_under_an_unpinned_name_is_trusted_on_first_use_only(tmp_path: Path) -> None:
    spec = add_spec("tofu", ["https://example.org/tofu.pt"], sha256=None)
    first = tmp_path / "first.pt"
    first.write_bytes(DATA)
    imported = dl.import_weights(first, name="tofu")
    assert not imported.verified  # nothing to verify against: the CLI says so
    assert dl.verify_cached(spec) == imported.path  # its hash is recorded and checked
    other = tmp_path / "other.pt"
    other.write_bytes(b"something else")
    with pytest.raises(WeightsError, match="differs from the weights already imported"):
        dl.import_weights(other, name="tofu")
    assert registry.cached_path(spec).read_bytes() == DATA
    assert (
        dl.import_weights(other, name="tofu", force=True).sha256
        == hashlib.sha256(b"something else").hexdigest()
    )


def test_failed_download_leaves_no_lock_file_and_does_not_offer_itself_again(
    server: ServerState, home: Path
) -> None:
    spec = add_spec("unreachable", [server.url("/gone.pt")])
    with pytest.raises(WeightsError) as info:
        dl.download(spec, progress=False)
    message = str(info.value)
    assert "swinface weights download" not in message  # the download that just failed
    assert "swinface weights import PATH --name unreachable" in message
    assert message.count("404") == 1
    assert not registry.cached_path(spec).parent.exists()  # no lock, no empty folder


def test_lock_file_is_removed_after_a_download(server: ServerState) -> None:
    server.files["/w.pt"] = DATA
    spec = add_spec("locked", [server.url("/w.pt")])
    path = dl.download(spec, progress=False)
    assert sorted(p.name for p in path.parent.iterdir()) == ["locked.pt", "locked.pt.sha256"]


def test_latest_checkpoint_of_a_training_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for step in ("step_0000100", "step_0000200", "step_0000300"):
        (run / "checkpoints" / step).mkdir(parents=True)
        (run / "checkpoints" / step / "model.safetensors").write_bytes(b"x")
    (run / "checkpoints" / "latest").write_text("step_0000200")
    expected = run / "checkpoints" / "step_0000200" / "model.safetensors"
    assert dl.latest_checkpoint(run) == expected
    assert dl.resolve_weights(run) == (expected, None)
    assert dl.resolve_weights(run / "checkpoints") == (expected, None)
    (run / "checkpoints" / "latest").write_text("step_0000900")  # a pointer to nothing
    assert dl.latest_checkpoint(run).parent.name == "step_0000300"
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no checkpoint"):
        dl.resolve_weights(tmp_path / "empty")


def test_import_weights_wrong_hash(tmp_path: Path) -> None:
    mine = tmp_path / "other.pt"
    mine.write_bytes(b"other bytes")
    spec = add_spec("imp2", ["https://example.org/imp.pt"])
    with pytest.raises(WeightsError) as info:
        dl.import_weights(mine, name="imp2")
    assert SHA in str(info.value) and hashlib.sha256(b"other bytes").hexdigest() in str(info.value)
    final = registry.cached_path(spec)
    assert not final.exists() and leftovers(final) == []
    assert mine.read_bytes() == b"other bytes"
    with pytest.raises(WeightsError, match="no such file"):
        dl.import_weights(tmp_path / "missing.pt")


# ---------------------------------------------------------------- resolve


def test_resolve_weights(server: ServerState, tmp_path: Path) -> None:
    file = tmp_path / "local.safetensors"
    file.write_bytes(b"x")
    assert dl.resolve_weights(str(file)) == (file, None)
    assert dl.resolve_weights(file) == (file, None)

    server.files["/w.pt"] = DATA
    spec = add_spec("named", [server.url("/w.pt")])
    path, got = dl.resolve_weights("named")  # downloads
    assert got is spec and path.read_bytes() == DATA
    assert dl.resolve_weights("named", download=False) == (path, spec)
    assert len(server.requests) == 1


def test_resolve_uncached_without_download(server: ServerState) -> None:
    add_spec("later", [server.url("/later.pt")])
    with pytest.raises(WeightsError) as info:
        dl.resolve_weights("later", download=False)
    message = str(info.value)
    assert "swinface weights download later" in message
    assert "swinface weights import PATH --name later" in message
    assert server.url("/later.pt") in message and "--weights PATH" in message
    assert server.requests == []


def test_resolve_download_failure_says_how(server: ServerState) -> None:
    add_spec("missing", [server.url("/missing.pt")])
    with pytest.raises(WeightsError, match="swinface weights import PATH --name missing"):
        dl.resolve_weights("missing")


def test_resolve_unknown_string() -> None:
    with pytest.raises(WeightsError) as info:
        dl.resolve_weights("no-such-thing.pt")
    assert "'no-such-thing.pt'" in str(info.value)
    assert registry.DEFAULT_WEIGHTS in str(info.value)


# ---------------------------------------------------------------- CLI


def test_cli_weights_list_and_download(
    server: ServerState, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from swinface.cli import main

    server.files["/w.pt"] = DATA
    spec = add_spec("cli-weights", [server.url("/w.pt")], size=len(DATA))
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert str(home / "weights") in out
    assert registry.DEFAULT_WEIGHTS in out and "cli-weights" in out and "not cached" in out

    assert main(["weights", "download", "cli-weights"]) == 0
    assert capsys.readouterr().out.strip() == str(registry.cached_path(spec))
    assert registry.cached_path(spec).read_bytes() == DATA

    assert main(["weights", "download", "nope"]) == 2
    assert "no weights registered as 'nope'" in capsys.readouterr().err
