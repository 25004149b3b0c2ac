"""A local stand-in for the Hugging Face hub: enough of it for `hf_hub_download` of a dataset repo.

Two HTTP servers on 127.0.0.1, as on the real hub: the hub itself answers
HEAD/GET on /datasets/<repo>/resolve/<revision>/<path> with the headers
huggingface_hub reads (X-Repo-Commit, ETag or X-Linked-Etag / X-Linked-Size,
X-Error-Code on errors), and sends large ("LFS") files to a second server, a
CDN on another port, by a 302; the CDN serves the bytes and honours Range
requests, so a dropped download can resume. Small files come straight from
the hub with their git blob id as ETag, LFS files carry their sha256.

Faults make the failure paths testable: per file, a queue of one-shot faults
("drop": close the connection after `drop_at` bytes; "503"; "corrupt": flip a
byte) consumed by successive GETs, and `sticky` faults applied to every GET.
Every request is recorded (server, method, path, Range, Authorization).
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class Request:
    server: str
    method: str
    path: str
    range: str | None
    auth: str | None


@dataclass
class FakeHub:
    repo_id: str
    files: dict[str, bytes]
    commit: str = COMMIT
    branches: tuple[str, ...] = ("main",)
    lfs_suffixes: tuple[str, ...] = (".bin", ".model")
    drop_at: int = 12 << 20  # past huggingface_hub's 10 MB read chunk, so the first chunk is kept
    faults: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    sticky: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeHub:
        self._servers = [self._serve("hub"), self._serve("cdn")]
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def _serve(self, role: str) -> ThreadingHTTPServer:
        hub = self

        class Handler(_Handler):
            def setup(self):
                super().setup()
                self.hub, self.role = hub, role

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False  # the client keeps connections alive; do not wait for them
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        setattr(self, f"{role}_url", f"http://127.0.0.1:{server.server_address[1]}")
        return server

    @property
    def url(self) -> str:
        return self.hub_url

    # ------------------------------------------------------------ queries for tests

    def gets(self, server: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and (server is None or r.server == server)]

    def cdn_path(self, repo_path: str) -> str:
        return f"/blobs/{hashlib.sha256(self.files[repo_path]).hexdigest()}"

    def is_lfs(self, repo_path: str) -> bool:
        return repo_path.endswith(self.lfs_suffixes)

    def path_of_blob(self, sha256: str) -> str | None:
        return next((p for p, data in self.files.items() if hashlib.sha256(data).hexdigest() == sha256), None)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the hub; every response carries Content-Length
    hub: FakeHub
    role: str

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_GET(self) -> None:
        self._handle(head=False)

    # ------------------------------------------------------------ routing

    def _handle(self, head: bool) -> None:
        self.hub.requests.append(
            Request(self.role, self.command, self.path, self.headers.get("Range"), self.headers.get("Authorization"))
        )
        if self.role == "cdn":
            sha = self.path.rsplit("/", 1)[-1]
            repo_path = self.hub.path_of_blob(sha)
            if repo_path is None:
                return self._empty(404)
            return self._content(repo_path, head)
        prefix = f"/datasets/{self.hub.repo_id}/resolve/"
        if not self.path.startswith(prefix):
            return self._empty(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        revision, _, repo_path = self.path[len(prefix) :].partition("/")
        revision, repo_path = unquote(revision), unquote(repo_path)
        if revision != self.hub.commit and revision not in self.hub.branches:
            return self._empty(404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"})
        commit = {"X-Repo-Commit": self.hub.commit}
        if repo_path not in self.hub.files:
            return self._empty(404, {**commit, "X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"})
        data = self.hub.files[repo_path]
        if self.hub.is_lfs(repo_path):
            return self._empty(302, {
                **commit,
                "Location": self.hub.cdn_url + self.hub.cdn_path(repo_path),
                "X-Linked-Size": str(len(data)),
                "X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"',
                "ETag": f'"{git_blob_id(data)}"',
            })
        return self._content(repo_path, head, {**commit, "ETag": f'"{git_blob_id(data)}"'})

    # ------------------------------------------------------------ responses

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _content(self, repo_path: str, head: bool, headers: dict[str, str] | None = None) -> None:
        data = self.hub.files[repo_path]
        fault = None if head else (self.hub.sticky.get(repo_path) or (self.hub.faults[repo_path] or [None]).pop(0))
        if fault == "503":
            return self._empty(503)
        if fault == "corrupt":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        start = 0
        if (wanted := self.headers.get("Range")) and wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[6:-1])
        body = data[start:]
        self.send_response(206 if start else 200)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        if fault == "drop":
            self.wfile.write(body[: self.hub.drop_at])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # mid-body: the client sees a short read
            self.close_connection = True
            return
        self.wfile.write(body)
