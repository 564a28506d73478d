"""A small stand-in for the Hugging Face Hub on 127.0.0.1, for the tests of ``hub/``.

It speaks the part of the Hub's HTTP API that ``huggingface_hub`` 2.4 calls
when it creates a model repo, commits a folder and downloads files:

=========================================================  ==========================================
``POST /api/repos/create``                                 create a repo (409 with ``url`` if it exists)
``POST /api/validate-yaml``                                accept a model card's metadata
``POST /api/models/{id}/preupload/{rev}``                  upload mode of each file: always ``regular``
``POST /api/models/{id}/commit/{rev}``                     NDJSON commit: ``header``, ``file`` (base64),
                                                           ``deletedFile``
``GET  /api/models/{id}/revision/{rev}``                   repo info at a revision (``sha``, ``siblings``)
``GET  /api/models/{id}/tree/{rev}``                       files at a revision
``HEAD/GET /{id}/resolve/{rev}/{path}``                    a file, with ``X-Repo-Commit``, ``ETag`` and
                                                           ``Content-Length``
=========================================================  ==========================================

Files are always uploaded inline (``regular``): the client would send LFS
files through the Xet protocol, which this server does not speak. Downloads
then announce binary files the way the Hub announces its LFS files, by their
sha256 (``X-Linked-Etag``, ``X-Linked-Size``, ``lfs`` in the tree); text files
get the git blob id as ``ETag``.

Errors carry the Hub's ``X-Error-Code`` (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``), so the client raises its own
exception types. Writes need ``Authorization: Bearer <token>`` with a token
the server was given; private repos need it for reads too.

:meth:`FakeHub.tamper` replaces the bytes of a stored file while the server
keeps announcing the old checksum, as a corrupted mirror or a tampered
download would. :attr:`FakeHub.requests` records every request, so a test can
check what the client asked for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

__all__ = ["FakeHub"]


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob (what the Hub gives as ``ETag`` of a non-LFS file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(data: bytes) -> bool:
    """Whether the Hub would keep this file in LFS: binary content (a NUL byte early on)."""
    return b"\0" in data[:8000]


@dataclass
class Stored:
    data: bytes
    sha256: str  # what the server announces; tamper() changes data, not this
    blob_id: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, dict[str, Stored]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class FakeHub:
    """A Hub on ``http://127.0.0.1:PORT``; ``start()`` it (or use it as a context manager)."""

    def __init__(self, tokens=("hf_test_write",)):
        self.tokens = set(tokens)
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- test helpers ------------------------------------------------------------

    def tamper(self, repo_id: str, path: str, data: bytes, revision: str = "main") -> None:
        """Serve ``data`` for ``path`` at ``revision``, still announcing the original checksum."""
        with self._lock:
            repo = self.repos[repo_id]
            stored = repo.commits[repo.resolve(revision)][path]
            stored.data = data

    def add_commit(self, repo_id: str, files: dict[str, bytes], summary: str = "files", private=False) -> str:
        """Commit ``files`` to ``main`` directly (creating the repo), as another publisher would."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo(repo_id, private))
            return self._commit(repo, "main", summary, files, ())

    def _commit(self, repo: Repo, branch: str, summary: str, added: dict[str, bytes], deleted) -> str:
        parent = repo.branches.get(branch)
        files = dict(repo.commits[parent]) if parent else {}
        for path in deleted:
            files.pop(path, None)
        for path, data in added.items():
            files[path] = Stored(data, hashlib.sha256(data).hexdigest(), git_blob_id(data))
        digest = hashlib.sha1(f"{parent}\n{summary}\n{time.time_ns()}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path].blob_id.encode())
        sha = digest.hexdigest()
        repo.commits[sha] = files
        repo.branches[branch] = sha
        return sha


class _Handler(BaseHTTPRequestHandler):
    server_hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    # -- plumbing ----------------------------------------------------------------

    def _reply(self, status: int, body=b"", headers=None, head=False) -> None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, head=False, extra=None) -> None:
        headers = {"X-Error-Message": message, **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        self._reply(status, {"error": message}, headers, head=head)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.server_hub.tokens

    def _repo(self, repo_id: str, head=False, write=False) -> Repo | None:
        repo = self.server_hub.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()):
            self._error(404, "RepoNotFound", f"Repository not found: {repo_id}", head=head)
            return None
        if write and not self._authorized():
            self._error(401, None, "Invalid credentials in Authorization header", head=head)
            return None
        return repo

    def _route(self, method: str) -> None:
        hub = self.server_hub
        url = urlsplit(self.path)
        with hub._lock:
            hub.requests.append((method, url.path))
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        head = method == "HEAD"
        with hub._lock:
            if method == "POST" and url.path == "/api/repos/create":
                return self._create()
            if method == "POST" and url.path == "/api/validate-yaml":
                self._body()
                return self._reply(200, {"errors": [], "warnings": []})
            if len(parts) >= 6 and parts[:2] == ["api", "models"]:
                repo_id, action, rev = f"{parts[2]}/{parts[3]}", parts[4], "/".join(parts[5:])
                if method == "POST" and action == "preupload":
                    return self._preupload(repo_id)
                if method == "POST" and action == "commit":
                    return self._commit(repo_id, rev)
                if method == "GET" and action in ("revision", "tree"):
                    return self._info(repo_id, rev, action)
            if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head)
            self._body()
            self._error(404, None, f"not served by the test Hub: {method} {url.path}", head=head)

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")

    def do_POST(self):
        self._route("POST")

    # -- endpoints ---------------------------------------------------------------

    def _create(self) -> None:
        payload = json.loads(self._body() or b"{}")
        if not self._authorized():
            return self._error(401, None, "Invalid credentials in Authorization header")
        repo_id = f"{payload.get('organization')}/{payload['name']}"
        url = f"http://{self.headers['Host']}/{repo_id}"
        if repo_id in self.server_hub.repos:
            return self._reply(409, {"error": "You already created this model repo", "url": url})
        self.server_hub.repos[repo_id] = Repo(repo_id, payload.get("visibility") == "private")
        self._reply(200, {"url": url, "name": repo_id})

    def _preupload(self, repo_id: str) -> None:
        payload = json.loads(self._body() or b"{}")
        if self._repo(repo_id, write=True) is None:
            return
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in payload["files"]]
        self._reply(200, {"files": files})

    def _commit(self, repo_id: str, rev: str) -> None:
        body = self._body()
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        if rev not in repo.branches and repo.branches:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        summary, added, deleted = "", {}, []
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary", "")
            elif key == "file" and value.get("encoding") == "base64":
                added[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                deleted.append(value["path"])
            else:  # lfsFile: never asked for, since preupload answers "regular"
                return self._error(422, None, f"the test Hub does not accept commit items of kind {key!r}")
        sha = self.server_hub._commit(repo, rev, summary, added, deleted)
        url = f"http://{self.headers['Host']}/{repo_id}/commit/{sha}"
        self._reply(200, {"commitUrl": url, "commitOid": sha, "pullRequestUrl": None})

    def _info(self, repo_id: str, rev: str, action: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        files = repo.commits[sha]
        if action == "revision":
            siblings = [{"rfilename": p} for p in sorted(files)]
            return self._reply(
                200,
                {"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                 "siblings": siblings, "tags": [], "downloads": 0, "likes": 0},
            )
        tree = []
        for path in sorted(files):
            f = files[path]
            entry = {"type": "file", "oid": f.blob_id, "size": len(f.data), "path": path}
            if is_lfs(f.data):
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
            tree.append(entry)
        self._reply(200, tree)

    def _resolve(self, repo_id: str, rev: str, path: str, head: bool) -> None:
        repo = self._repo(repo_id, head=head)
        if repo is None:
            return
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head=head)
        stored = repo.commits[sha].get(path)
        if stored is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist at {rev}", head=head,
                               extra={"X-Repo-Commit": sha})
        headers = {"X-Repo-Commit": sha, "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if is_lfs(stored.data):
            headers.update({"ETag": f'"{stored.sha256}"', "X-Linked-Etag": f'"{stored.sha256}"',
                            "X-Linked-Size": str(len(stored.data))})
        else:
            headers["ETag"] = f'"{stored.blob_id}"'
        self._reply(200, stored.data, headers, head=head)
