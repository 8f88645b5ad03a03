"""A small Hugging Face Hub-API server on 127.0.0.1, because tests here have no network.

It answers the part of the Hub protocol that huggingface_hub 2.x and transformers 5.x use: repo
creation, the preupload / LFS batch / NDJSON commit upload flow, branches and tags, revision info,
tree listing, and ``/resolve`` downloads with the headers ``hf_hub_download`` needs. Repos are kept
on disk as plain file trees, one per commit, so a failing test can be debugged with ``ls``.

Xet storage is never advertised (no ``X-Xet-*`` headers, no ``xetHash``), so downloads use plain
HTTP. Uploads cannot be steered the same way: an installed ``hf_xet`` is used for every file the
server marks as LFS, so clients must run with ``HF_HUB_DISABLE_XET=1`` (``HubServer.env`` and
``HubServer.patch_in_process`` set it); the Xet token endpoints answer 501 saying so.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import mimetypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import yaml

__all__ = ["HubError", "HubServer", "HubStore", "RecordedRequest", "RepoStore"]

DEFAULT_BRANCH = "main"
DUMMY_TOKEN = "hf_hub_server_dummy_token"
# Files above this size are stored with LFS even when .gitattributes does not say so (Hub rule).
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
_CHUNK = 1024 * 1024
_JSON = "application/json"
_COMMIT_ID = re.compile(r"[0-9a-f]{40}")
_HEX_PREFIX = re.compile(r"[0-9a-f]{7,40}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_FRONT_MATTER = re.compile(r"^---\s*\n(.*?)\n---\s*(\n|$)", flags=re.DOTALL)
# URL segment of the API ("models") -> repo type ("model"), and repo type -> prefix of web URLs.
_API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# Variables that would override what `HubServer.env` derives from HF_HOME / HF_ENDPOINT.
_OVERRIDING_ENV = (
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_ASSETS_CACHE",
    "HUGGINGFACE_ASSETS_CACHE",
    "HF_XET_CACHE",
    "HF_TOKEN_PATH",
    "HUGGING_FACE_HUB_TOKEN",
    "HUGGINGFACE_CO_STAGING",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN",
    "HF_MODULES_CACHE",
    "TRANSFORMERS_CACHE",
    "XDG_CACHE_HOME",
)
# The .gitattributes the Hub writes in the first commit of every repo (its LFS patterns).
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
        "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
        "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
        "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
)  # fmt: skip


class HubError(Exception):
    """An HTTP error answered the way the Hub does, so huggingface_hub raises the matching exception."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def _repo_not_found(repo_id: str, status: int = 404) -> HubError:
    return HubError(status, f"Repository not found: {repo_id}", code="RepoNotFound")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _check_repo_id(repo_id: str) -> str:
    namespace, _, name = repo_id.partition("/")
    if not (_NAME.fullmatch(namespace) and _NAME.fullmatch(name)) or name.endswith(".git"):
        raise HubError(400, f"Invalid repo id: {repo_id!r} (expected 'namespace/name')")
    return repo_id


def _check_repo_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..", ".git") for part in parts):
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


def _matches(patterns: list[str], path: str) -> bool:
    """Whether a repo path matches one of the .gitattributes/.gitignore style patterns (no negation)."""
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        if pattern.endswith("/"):
            if path.startswith(pattern) or f"/{pattern}" in f"/{path}":
                return True
        elif "/" in pattern.strip("/"):
            if fnmatch.fnmatchcase(path, pattern.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pattern.lstrip("/")):
            return True
    return False


def _lfs_patterns(gitattributes: str) -> list[str]:
    return [line.split()[0] for line in gitattributes.splitlines() if "filter=lfs" in line.split()[1:]]


def _ignore_patterns(gitignore: str) -> list[str]:
    return [line.strip() for line in gitignore.splitlines() if line.strip() and not line.startswith(("#", "!"))]


def _folders_of(paths: Iterable[str]) -> set[str]:
    return {"/".join(path.split("/")[:i]) for path in paths for i in range(1, path.count("/") + 1)}


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit: where its bytes live (sha256) and the ids git would give it."""

    sha256: str
    size: int
    lfs: bool
    git_oid: str  # git blob id of the content, or of the LFS pointer for LFS files

    @classmethod
    def build(cls, sha256: str, size: int, lfs: bool, content: bytes | None = None) -> FileEntry:
        if lfs:
            return cls(sha256, size, True, _git_blob_oid(_lfs_pointer(sha256, size)))
        assert content is not None, "regular files need their content to compute the git oid"
        return cls(sha256, size, False, _git_blob_oid(content))

    @property
    def pointer_size(self) -> int:
        return len(_lfs_pointer(self.sha256, self.size))

    @property
    def etag(self) -> str:
        """The id huggingface_hub caches the blob under: sha256 for LFS files, git oid otherwise."""
        return self.sha256 if self.lfs else self.git_oid


@dataclass(frozen=True)
class Commit:
    id: str
    parents: list[str]
    title: str
    message: str
    date: str
    files: dict[str, FileEntry] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "files": {path: asdict(entry) for path, entry in sorted(self.files.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Commit:
        files = {path: FileEntry(**entry) for path, entry in data.pop("files").items()}
        return cls(**data, files=files)

    def folders(self) -> set[str]:
        return _folders_of(self.files)

    def tree_oid(self, folder: str) -> str:
        """A git-like tree id of a folder: changes exactly when something below it changes."""
        prefix = f"{folder}/" if folder else ""
        digest = hashlib.sha1(b"tree\0")
        for path in sorted(p for p in self.files if p.startswith(prefix)):
            digest.update(f"{path[len(prefix):]}\0{self.files[path].git_oid}\n".encode())
        return digest.hexdigest()


class RepoStore:
    """One repo on disk: ``repo.json``, ``refs.json``, content-addressed ``objects/`` and one
    ``commits/<id>/`` folder per commit holding ``commit.json`` and the full file ``tree/``."""

    def __init__(self, path: Path, repo_type: str, repo_id: str, lock: threading.RLock):
        self.path = path
        self.repo_type = repo_type
        self.repo_id = repo_id
        self._lock = lock

    # -- metadata ---------------------------------------------------------------------------------

    @property
    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / "repo.json").read_text())

    def set_private(self, private: bool) -> None:
        with self._lock:
            _write_json_atomic(self.path / "repo.json", {**self.meta, "private": private})

    @property
    def refs(self) -> dict[str, dict[str, str]]:
        """``{"heads": {branch: commit}, "tags": {tag: commit}}``; PR refs are heads named ``refs/pr/N``."""
        return json.loads((self.path / "refs.json").read_text())

    def _save_refs(self, refs: dict[str, dict[str, str]]) -> None:
        _write_json_atomic(self.path / "refs.json", refs)

    def initialize(self, private: bool) -> None:
        self.path.mkdir(parents=True)
        _write_json_atomic(
            self.path / "repo.json",
            {
                "id": self.repo_id,
                "type": self.repo_type,
                "private": private,
                "createdAt": _now(),
                "uuid": uuid.uuid4().hex,
            },
        )
        self._save_refs({"heads": {}, "tags": {}})
        content = DEFAULT_GITATTRIBUTES.encode()
        entry = FileEntry.build(self._store_bytes(content), len(content), lfs=False, content=content)
        initial = self._write_commit([], {".gitattributes": entry}, "initial commit", "")
        self._save_refs({"heads": {DEFAULT_BRANCH: initial.id}, "tags": {}})

    # -- objects ----------------------------------------------------------------------------------

    def object_path(self, sha256: str) -> Path:
        return self.path / "objects" / sha256

    def has_object(self, sha256: str) -> bool:
        return self.object_path(sha256).is_file()

    def _store_bytes(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        return self.store_stream(iter([content]), expected_sha256=sha256)

    def store_stream(self, chunks: Iterator[bytes], expected_sha256: str | None = None) -> str:
        """Write an object while hashing it; refuse it when its sha256 is not the announced one."""
        objects = self.path / "objects"
        objects.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=objects, prefix=".incoming.")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    digest.update(chunk)
                    f.write(chunk)
            sha256 = digest.hexdigest()
            if expected_sha256 is not None and sha256 != expected_sha256:
                raise HubError(400, f"Uploaded content has sha256 {sha256}, expected {expected_sha256}")
            os.replace(tmp, objects / sha256)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return sha256

    # -- commits ----------------------------------------------------------------------------------

    def commit_by_id(self, commit_id: str) -> Commit:
        return Commit.from_json(json.loads((self.path / "commits" / commit_id / "commit.json").read_text()))

    def commit_ids(self) -> list[str]:
        return sorted(p.name for p in (self.path / "commits").iterdir() if _COMMIT_ID.fullmatch(p.name))

    def file_path(self, commit: Commit, path: str) -> Path:
        return self.path / "commits" / commit.id / "tree" / path

    def resolve(self, revision: str) -> Commit:
        """Branch, tag, ``refs/heads|tags/...``, full commit id or unique commit id prefix -> commit."""
        refs = self.refs
        for prefix, kind in (("refs/heads/", "heads"), ("refs/tags/", "tags"), ("", "heads"), ("", "tags")):
            name = revision.removeprefix(prefix) if revision.startswith(prefix) else None
            if name is not None and name in refs[kind]:
                return self.commit_by_id(refs[kind][name])
        if _HEX_PREFIX.fullmatch(revision):
            matches = [cid for cid in self.commit_ids() if cid.startswith(revision)]
            if len(matches) == 1:
                return self.commit_by_id(matches[0])
        raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")

    def history(self, commit: Commit) -> list[Commit]:
        """First-parent history, newest first."""
        chain = [commit]
        while chain[-1].parents:
            chain.append(self.commit_by_id(chain[-1].parents[0]))
        return chain

    def last_commit_touching(self, commit: Commit, path: str, is_folder: bool) -> Commit:
        def state(c: Commit) -> str:
            return c.tree_oid(path) if is_folder else (c.files[path].git_oid if path in c.files else "")

        chain = self.history(commit)
        for newer, older in zip(chain, chain[1:]):
            if state(newer) != state(older):
                return newer
        return chain[-1]

    def _write_commit(self, parents: list[str], files: dict[str, FileEntry], title: str, message: str) -> Commit:
        date = _now()
        tree = sorted((path, entry.git_oid) for path, entry in files.items())
        seed = json.dumps([parents, tree, title, message, date, time.time_ns()])
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parents, title, message, date, files)
        folder = self.path / "commits" / commit.id
        staging = self.path / "commits" / f".{commit.id}.staging"
        for path, entry in files.items():
            target = staging / "tree" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(self.object_path(entry.sha256), target)
            except OSError:
                shutil.copyfile(self.object_path(entry.sha256), target)
        (staging / "tree").mkdir(parents=True, exist_ok=True)
        _write_json_atomic(staging / "commit.json", commit.to_json())
        os.replace(staging, folder)
        return commit

    def branch_head(self, branch: str) -> Commit:
        refs = self.refs
        if branch in refs["heads"]:
            return self.commit_by_id(refs["heads"][branch])
        if branch in refs["tags"] or _HEX_PREFIX.fullmatch(branch):
            raise HubError(400, f"Can only commit to a branch, not to {branch!r}")
        raise HubError(404, f"Invalid rev id: {branch}", code="RevisionNotFound")

    def commit(
        self, branch: str, header: dict[str, Any], operations: list[dict[str, Any]], create_pr: bool
    ) -> tuple[Commit, str]:
        """Apply NDJSON commit operations on top of a branch; returns the commit and the ref it moved."""
        with self._lock:
            head = self.branch_head(branch)
            parent = header.get("parentCommit")
            if parent and parent != head.id:
                raise HubError(412, f"parentCommit {parent} is not the head of {branch} ({head.id})")
            files = dict(head.files)
            for operation in operations:
                self._apply(files, operation.get("key"), operation.get("value") or {})
            clashes = sorted(set(files) & _folders_of(files))
            if clashes:
                raise HubError(400, f"Paths would be both a file and a folder: {clashes}")
            commit = self._write_commit([head.id], files, header.get("summary") or "", header.get("description") or "")
            refs = self.refs
            if create_pr:
                number = 1 + sum(name.startswith("refs/pr/") for name in refs["heads"])
                branch = f"refs/pr/{number}"
            refs["heads"][branch] = commit.id
            self._save_refs(refs)
            return commit, branch

    def _apply(self, files: dict[str, FileEntry], key: str | None, value: dict[str, Any]) -> None:
        path = _check_repo_path(str(value.get("path", "")))
        if key == "file":
            raw = value.get("content", "")
            content = base64.b64decode(raw) if value.get("encoding") == "base64" else raw.encode()
            files[path] = FileEntry.build(self._store_bytes(content), len(content), lfs=False, content=content)
        elif key == "lfsFile":
            sha256 = str(value.get("oid", ""))
            if not self.has_object(sha256):
                raise HubError(400, f"LFS object {sha256} for {path!r} was never uploaded to {self.repo_id}")
            files[path] = FileEntry.build(sha256, self.object_path(sha256).stat().st_size, lfs=True)
        elif key == "deletedFile":
            if path not in files:
                raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
            del files[path]
        elif key == "deletedFolder":
            inside = [p for p in files if p.startswith(path.rstrip("/") + "/")]
            if not inside:
                raise HubError(404, f"A folder with this name doesn't exist: {path}", code="EntryNotFound")
            for p in inside:
                del files[p]
        else:
            raise HubError(400, f"Unknown commit operation {key!r} (path {path!r})")

    # -- refs -------------------------------------------------------------------------------------

    def create_ref(self, kind: str, name: str, target: Commit) -> None:
        if not all(_NAME.fullmatch(part) for part in name.split("/")):
            raise HubError(400, f"Invalid {kind[:-1]} name: {name!r}")
        with self._lock:
            refs = self.refs
            if name in refs["heads"] or name in refs["tags"]:
                raise HubError(409, f"Reference already exists: {name}")
            refs[kind][name] = target.id
            self._save_refs(refs)

    def delete_ref(self, kind: str, name: str) -> None:
        with self._lock:
            refs = self.refs
            if name not in refs[kind]:
                raise HubError(404, f"Invalid rev id: {name}", code="RevisionNotFound")
            if kind == "heads" and name == DEFAULT_BRANCH:
                raise HubError(403, f"Cannot delete the default branch {DEFAULT_BRANCH}")
            del refs[kind][name]
            self._save_refs(refs)


class HubStore:
    """All repos under ``root/<type>s/<namespace>/<name>``."""

    def __init__(self, root: Path):
        self.root = root
        self.lock = threading.RLock()

    def _path(self, repo_type: str, repo_id: str) -> Path:
        return self.root / f"{repo_type}s" / repo_id

    def get(self, repo_type: str, repo_id: str, authenticated: bool) -> RepoStore:
        path = self._path(repo_type, _check_repo_id(repo_id))
        if not (path / "refs.json").is_file():
            raise _repo_not_found(repo_id)
        repo = RepoStore(path, repo_type, repo_id, self.lock)
        if repo.meta["private"] and not authenticated:
            raise _repo_not_found(repo_id, status=401)
        return repo

    def create(self, repo_type: str, repo_id: str, private: bool) -> RepoStore:
        with self.lock:
            path = self._path(repo_type, _check_repo_id(repo_id))
            if path.exists():
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}")
            repo = RepoStore(path, repo_type, repo_id, self.lock)
            repo.initialize(private)
            return repo

    def delete(self, repo_type: str, repo_id: str) -> None:
        with self.lock:
            path = self._path(repo_type, _check_repo_id(repo_id))
            if not path.exists():
                raise _repo_not_found(repo_id)
            shutil.rmtree(path)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # unquoted path, without the query string
    status: int


def _file_json(commit: Commit, path: str) -> dict[str, Any]:
    entry = commit.files[path]
    data: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
    if entry.lfs:
        data["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return data


def _folder_json(commit: Commit, path: str) -> dict[str, Any]:
    return {"type": "directory", "oid": commit.tree_oid(path), "size": 0, "path": path}


def _front_matter(text: str) -> dict[str, Any]:
    """The YAML metadata block of a model card ({} without one); ValueError when it is not a mapping."""
    match = _FRONT_MATTER.match(text)
    try:
        data = yaml.safe_load(match.group(1)) if match else {}
    except yaml.YAMLError as error:
        raise ValueError(f"Invalid YAML in the model card metadata: {error}") from error
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"Model card metadata must be a YAML mapping, got {type(data).__name__}")
    return data or {}


def _card_data(repo: RepoStore, commit: Commit) -> dict[str, Any]:
    """YAML front matter of README.md, which the Hub exposes as ``cardData`` ({} when absent/invalid)."""
    if "README.md" not in commit.files:
        return {}
    try:
        return _front_matter(repo.file_path(commit, "README.md").read_text(encoding="utf-8", errors="replace"))
    except ValueError:
        return {}


def _config_summary(repo: RepoStore, commit: Commit) -> dict[str, Any] | None:
    if "config.json" not in commit.files:
        return None
    try:
        config = json.loads(repo.file_path(commit, "config.json").read_text(encoding="utf-8"))
    except ValueError:
        return None
    if not isinstance(config, dict):
        return None
    return {key: config[key] for key in ("architectures", "model_type", "auto_map") if key in config}


class _HubHandler(BaseHTTPRequestHandler):
    """Routes one request; every handler either returns normally or raises `HubError`."""

    protocol_version = "HTTP/1.1"
    server: _HubHTTPServer

    # -- plumbing ---------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the per-request stderr lines; requests are recorded in `HubServer.requests`."""

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        self.server.hub.record(RecordedRequest(self.command, unquote(urlsplit(self.path).path), int(code)))

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self._body_consumed = False
        split = urlsplit(self.path)
        if self.server.hub.take_fault(self.command, unquote(split.path)):
            self.close_connection = True  # no answer at all: to the client the server died mid-request
            return
        self.query = parse_qs(split.query, keep_blank_values=True)
        segments = [unquote(s) for s in split.path.strip("/").split("/")] if split.path.strip("/") else []
        try:
            self._route(segments)
        except HubError as error:
            self._drain()
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError):  # the client went away mid-response
            self.close_connection = True
            return
        except Exception:  # a server bug: answer 500 and keep it for the test to report
            self._drain()
            self.server.hub.errors.append(traceback.format_exc())
            self._send_error(HubError(500, "Internal error of the test Hub server (see HubServer.errors)"))
        self._drain()

    def _iter_body(self) -> Iterator[bytes]:
        self._body_consumed = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, _CHUNK))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk

    def _body(self) -> bytes:
        return b"".join(self._iter_body())

    def _json_body(self) -> Any:
        try:
            return json.loads(self._body() or b"{}")
        except ValueError as error:
            raise HubError(400, f"Request body is not valid JSON: {error}") from error

    def _drain(self) -> None:
        if not self._body_consumed:
            for _ in self._iter_body():
                pass

    def _send_head(self, status: int, headers: dict[str, str], content_type: str, length: int) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send_json(
        self, data: Any, status: int = 200, headers: dict[str, str] | None = None, content_type: str = _JSON
    ) -> None:
        body = json.dumps(data).encode()
        self._send_head(status, headers or {}, content_type, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, error: HubError) -> None:
        headers = {"X-Error-Message": error.message.replace("\n", " "), **error.headers}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._send_json({"error": error.message}, error.status, headers)

    @property
    def _authenticated(self) -> bool:
        """Any bearer token is accepted (the server only checks that the client sends one), unless
        `HubServer.check_token` is set: then only `HubServer.token` is."""
        header = self.headers.get("Authorization", "")
        if self.server.hub.check_token:
            return header == f"Bearer {self.server.hub.token}"
        return header.startswith("Bearer ")

    def _require_auth(self) -> None:
        if not self._authenticated:
            raise HubError(401, "Invalid credentials in Authorization header")

    def _flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1].lower() in ("1", "true")

    # -- routing ----------------------------------------------------------------------------------

    def _route(self, segments: list[str]) -> None:
        method = self.command
        if segments[:1] == ["api"]:
            self._route_api(method, segments[1:])
            return
        repo_type = "model"
        if segments[:1] and segments[0] in _API_TYPES and segments[0] != "models":
            repo_type, segments = _API_TYPES[segments[0]], segments[1:]
        if len(segments) >= 2 and segments[1].endswith(".git"):
            repo_id = f"{segments[0]}/{segments[1].removesuffix('.git')}"
            self._route_lfs(method, repo_type, repo_id, segments[2:])
            return
        if len(segments) >= 5 and segments[2] == "resolve" and method in ("GET", "HEAD"):
            repo = self.server.hub.store.get(repo_type, "/".join(segments[:2]), self._authenticated)
            self._resolve(repo, segments[3], "/".join(segments[4:]))
            return
        raise HubError(404, f"Unknown route: {method} /{'/'.join(segments)}")

    def _route_api(self, method: str, segments: list[str]) -> None:
        hub = self.server.hub
        simple = {
            ("GET", "agent-harnesses"): lambda: self._send_json({"standardEnvVars": [], "harnesses": {}}),
            ("GET", "whoami-v2"): self._whoami,
            ("POST", "validate-yaml"): self._validate_yaml,
            ("POST", "repos/create"): self._create_repo,
            ("DELETE", "repos/delete"): self._delete_repo,
        }
        if (method, "/".join(segments)) in simple:
            simple[(method, "/".join(segments))]()
            return
        if len(segments) < 3 or segments[0] not in _API_TYPES:
            raise HubError(404, f"Unknown API route: {method} /api/{'/'.join(segments)}")
        repo_type, repo_id, action, args = _API_TYPES[segments[0]], "/".join(segments[1:3]), segments[3:4], segments[4:]
        repo = hub.store.get(repo_type, repo_id, self._authenticated)
        route = (method, action[0] if action else "")
        if route == ("GET", "") or (route == ("GET", "revision") and len(args) == 1):
            self._repo_info(repo, args[0] if args else DEFAULT_BRANCH)
        elif route == ("GET", "tree") and args:
            self._tree(repo, args[0], "/".join(args[1:]))
        elif route == ("POST", "paths-info") and len(args) == 1:
            self._paths_info(repo, args[0])
        elif route == ("GET", "refs"):
            self._refs(repo)
        elif route == ("GET", "commits") and len(args) == 1:
            self._commits(repo, args[0])
        elif route[1] in ("xet-read-token", "xet-write-token"):
            raise HubError(501, "This test Hub has no Xet storage: run the client with HF_HUB_DISABLE_XET=1")
        else:
            self._require_auth()
            writes = {
                ("POST", "preupload"): self._preupload,
                ("POST", "commit"): self._commit,
                ("POST", "branch"): self._create_branch,
                ("DELETE", "branch"): self._delete_branch,
                ("POST", "tag"): self._create_tag,
                ("DELETE", "tag"): self._delete_tag,
                ("PUT", "settings"): self._settings,
            }
            if route not in writes or len(args) != (0 if route[1] == "settings" else 1):
                raise HubError(404, f"Unknown API route: {method} /api/{'/'.join(segments)}")
            writes[route](repo, *args)

    def _route_lfs(self, method: str, repo_type: str, repo_id: str, segments: list[str]) -> None:
        repo = self.server.hub.store.get(repo_type, repo_id, authenticated=True)  # PUTs carry no token
        if segments == ["info", "lfs", "objects", "batch"] and method == "POST":
            self._require_auth()
            self._lfs_batch(repo)
        elif segments == ["info", "lfs", "objects", "verify"] and method == "POST":
            self._lfs_verify(repo)
        elif segments[:3] == ["info", "lfs", "objects"] and len(segments) == 4 and method == "PUT":
            repo.store_stream(self._iter_body(), expected_sha256=segments[3])
            self._send_json({})
        else:
            raise HubError(404, f"Unknown LFS route: {method} {'/'.join(segments)}")

    # -- account / repo endpoints -----------------------------------------------------------------

    def _whoami(self) -> None:
        self._require_auth()
        user = self.server.hub.user
        self._send_json(
            {
                "type": "user",
                "id": hashlib.sha1(user.encode()).hexdigest()[:24],
                "name": user,
                "fullname": user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            }
        )

    def _validate_yaml(self) -> None:
        try:
            _front_matter(str(self._json_body().get("content", "")))
        except ValueError as error:
            self._send_json({"errors": [{"message": str(error)}], "warnings": []}, 400)
            return
        self._send_json({"errors": [], "warnings": []})

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.server.hub.url}/{_URL_PREFIXES[repo_type]}{repo_id}"

    def _create_repo(self) -> None:
        self._require_auth()
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        if repo_type not in _URL_PREFIXES:
            raise HubError(400, f"Unsupported repo type: {repo_type!r}")
        repo_id = f"{payload.get('organization') or self.server.hub.user}/{payload.get('name') or ''}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        url = self._repo_url(repo_type, repo_id)
        try:
            self.server.hub.store.create(repo_type, repo_id, private)
        except HubError as error:
            if error.status == 409:
                self._send_json({"error": error.message, "url": url}, 409, {"X-Error-Message": error.message})
                return
            raise
        self._send_json({"url": url, "name": repo_id, "id": uuid.uuid4().hex})

    def _delete_repo(self) -> None:
        self._require_auth()
        payload = self._json_body()
        repo_id = f"{payload.get('organization') or self.server.hub.user}/{payload.get('name') or ''}"
        self.server.hub.store.delete(payload.get("type") or "model", repo_id)
        self._send_json({})

    def _settings(self, repo: RepoStore) -> None:
        payload = self._json_body()
        if "visibility" in payload or "private" in payload:
            repo.set_private(payload.get("visibility") == "private" or payload.get("private") is True)
        self._send_json({})

    def _repo_info(self, repo: RepoStore, revision: str) -> None:
        commit = repo.resolve(revision)
        meta = repo.meta
        blobs = self._flag("blobs")
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.git_oid)
                if entry.lfs:
                    sibling["lfs"] = {"size": entry.size, "sha256": entry.sha256, "pointerSize": entry.pointer_size}
            siblings.append(sibling)
        card = _card_data(repo, commit)
        tags = card.get("tags") if isinstance(card.get("tags"), list) else []
        self._send_json(
            {
                "_id": meta["uuid"],
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.id,
                "lastModified": commit.date,
                "createdAt": meta["createdAt"],
                "private": meta["private"],
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": tags,
                "library_name": card.get("library_name"),
                "pipeline_tag": card.get("pipeline_tag"),
                "cardData": card or None,
                "config": _config_summary(repo, commit),
                "siblings": siblings,
                "spaces": [],
                "usedStorage": sum(entry.size for entry in commit.files.values()),
            }
        )

    # -- listing ----------------------------------------------------------------------------------

    def _entries(self, repo: RepoStore, commit: Commit, paths: list[str], expand: bool) -> list[dict[str, Any]]:
        folders = commit.folders()
        entries = []
        for path in paths:
            is_folder = path in folders
            entry = _folder_json(commit, path) if is_folder else _file_json(commit, path)
            if expand:
                last = repo.last_commit_touching(commit, path, is_folder)
                entry["lastCommit"] = {"id": last.id, "title": last.title, "date": last.date}
            entries.append(entry)
        return entries

    def _tree(self, repo: RepoStore, revision: str, folder: str) -> None:
        commit = repo.resolve(revision)
        folder = folder.strip("/")
        folders = commit.folders()
        if folder and folder not in folders:
            raise HubError(404, f"Folder not found: {folder}", "EntryNotFound", {"X-Repo-Commit": commit.id})
        prefix = f"{folder}/" if folder else ""
        below = sorted(p for p in (*folders, *commit.files) if p.startswith(prefix))
        if not self._flag("recursive"):
            below = [p for p in below if "/" not in p[len(prefix) :]]
        # Folders first then files, like the Hub; a cursor is an offset into that order.
        below.sort(key=lambda p: (p not in folders, p))
        expand = self._flag("expand")
        page_size = self.server.hub.tree_page_size
        start = int(self.query.get("cursor", ["0"])[-1] or 0)
        page = below[start : start + page_size]
        headers = {}
        if start + page_size < len(below):
            query = {k: v[-1] for k, v in self.query.items()} | {"cursor": str(start + page_size)}
            next_url = f"{self.server.hub.url}{quote(unquote(urlsplit(self.path).path))}?{urlencode(query)}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._send_json(self._entries(repo, commit, page, expand), headers=headers)

    def _paths_info(self, repo: RepoStore, revision: str) -> None:
        commit = repo.resolve(revision)
        form = parse_qs(self._body().decode(), keep_blank_values=True)
        existing = commit.folders() | set(commit.files)
        paths = [p.strip("/") for p in form.get("paths", []) if p.strip("/") in existing]
        expand = form.get("expand", ["False"])[-1].lower() in ("1", "true")
        self._send_json(self._entries(repo, commit, paths, expand))

    def _refs(self, repo: RepoStore) -> None:
        refs = repo.refs
        pulls = {n: c for n, c in refs["heads"].items() if n.startswith("refs/pr/")}
        branches = {n: c for n, c in refs["heads"].items() if n not in pulls}
        data = {
            "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in branches.items()],
            "converts": [],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in refs["tags"].items()],
        }
        if self._flag("include_prs"):
            data["pullRequests"] = [{"name": n, "ref": n, "targetCommit": c} for n, c in pulls.items()]
        self._send_json(data)

    def _commits(self, repo: RepoStore, revision: str) -> None:
        authors = [{"user": self.server.hub.user, "avatar": ""}]
        history = repo.history(repo.resolve(revision))
        self._send_json(
            [{"id": c.id, "title": c.title, "message": c.message, "date": c.date, "authors": authors} for c in history]
        )

    # -- upload flow ------------------------------------------------------------------------------

    def _preupload(self, repo: RepoStore, revision: str) -> None:
        commit = repo.branch_head(revision) if not self._flag("create_pr") else repo.resolve(revision)
        payload = self._json_body()
        attributes = repo.file_path(commit, ".gitattributes").read_text() if ".gitattributes" in commit.files else ""
        lfs_patterns = _lfs_patterns(attributes)
        gitignore = payload.get("gitIgnore")
        if gitignore is None and ".gitignore" in commit.files:
            gitignore = repo.file_path(commit, ".gitignore").read_text()
        ignored = _ignore_patterns(gitignore or "")
        answers = []
        for item in payload.get("files", []):
            path = _check_repo_path(str(item.get("path", "")))
            sample = base64.b64decode(item.get("sample", ""))
            lfs = _matches(lfs_patterns, path) or int(item.get("size", 0)) > LFS_SIZE_THRESHOLD or b"\0" in sample
            answer: dict[str, Any] = {
                "path": path,
                "uploadMode": "lfs" if lfs else "regular",
                "shouldIgnore": _matches(ignored, path),
            }
            existing = commit.files.get(path)
            if existing is not None:
                # The client compares this with its own oid: sha256 in lfs mode, git blob id otherwise.
                answer["oid"] = existing.sha256 if lfs else existing.git_oid
            answers.append(answer)
        self._send_json({"files": answers, "commitOid": commit.id})

    def _commit(self, repo: RepoStore, revision: str) -> None:
        try:
            lines = [json.loads(line) for line in self._body().decode().splitlines() if line.strip()]
        except ValueError as error:
            raise HubError(400, f"Commit payload is not valid NDJSON: {error}") from error
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "Commit payload must start with a 'header' line")
        create_pr = self._flag("create_pr")
        commit, ref = repo.commit(revision, lines[0].get("value") or {}, lines[1:], create_pr)
        base = self._repo_url(repo.repo_type, repo.repo_id)
        data: dict[str, Any] = {
            "success": True,
            "commitOid": commit.id,
            "commitUrl": f"{base}/commit/{commit.id}",
            "hookOutput": "",
        }
        if create_pr:
            data["pullRequestUrl"] = f"{base}/discussions/{ref.removeprefix('refs/pr/')}"
        self._send_json(data)

    def _lfs_batch(self, repo: RepoStore) -> None:
        payload = self._json_body()
        if payload.get("operation") != "upload":
            raise HubError(400, f"Only the LFS 'upload' operation is supported, got {payload.get('operation')!r}")
        base = f"{self._repo_url(repo.repo_type, repo.repo_id)}.git/info/lfs/objects"
        objects = []
        for obj in payload.get("objects", []):
            oid, size = str(obj.get("oid", "")), obj.get("size")
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int):
                answer["error"] = {"code": 422, "message": f"Invalid LFS object oid={oid!r} size={size!r}"}
            elif not repo.has_object(oid):
                answer["actions"] = {"upload": {"href": f"{base}/{oid}"}, "verify": {"href": f"{base}/verify"}}
            objects.append(answer)
        batch = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        self._send_json(batch, content_type="application/vnd.git-lfs+json")

    def _lfs_verify(self, repo: RepoStore) -> None:
        payload = self._json_body()
        oid, size = str(payload.get("oid", "")), payload.get("size")
        if not repo.has_object(oid):
            raise HubError(404, f"LFS object {oid} was not uploaded")
        if repo.object_path(oid).stat().st_size != size:
            raise HubError(400, f"LFS object {oid} has size {repo.object_path(oid).stat().st_size}, not {size}")
        self._send_json({})

    def _create_branch(self, repo: RepoStore, branch: str) -> None:
        start = self._json_body().get("startingPoint") or DEFAULT_BRANCH
        repo.create_ref("heads", branch, repo.resolve(start))
        self._send_json({})

    def _delete_branch(self, repo: RepoStore, branch: str) -> None:
        repo.delete_ref("heads", branch)
        self._send_json({})

    def _create_tag(self, repo: RepoStore, revision: str) -> None:
        tag = str(self._json_body().get("tag", ""))
        repo.create_ref("tags", tag, repo.resolve(revision))
        self._send_json({})

    def _delete_tag(self, repo: RepoStore, tag: str) -> None:
        repo.delete_ref("tags", tag)
        self._send_json({})

    # -- downloads --------------------------------------------------------------------------------

    def _resolve(self, repo: RepoStore, revision: str, path: str) -> None:
        commit = repo.resolve(revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound", headers={"X-Repo-Commit": commit.id})
        headers = {"ETag": f'"{entry.etag}"', "X-Repo-Commit": commit.id, "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        start, end = 0, entry.size
        requested = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        status = 200
        if requested and entry.size:
            start, end = int(requested.group(1)), min(int(requested.group(2) or entry.size - 1) + 1, entry.size)
            if start >= end:
                raise HubError(416, f"Range {self.headers['Range']} outside of {entry.size} bytes")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
        self._send_head(status, headers, mimetypes.guess_type(path)[0] or "application/octet-stream", end - start)
        if self.command == "HEAD":
            return
        with open(repo.file_path(commit, path), "rb") as f:
            f.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = f.read(min(remaining, _CHUNK))
                self.wfile.write(chunk)
                remaining -= len(chunk)


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: HubServer):
        self.hub = hub
        super().__init__(("127.0.0.1", 0), _HubHandler)


class HubServer:
    """The server and what a client needs to reach it: ``url``, ``root`` (repo storage), ``hf_home``
    (an empty cache for clients), ``env()`` for subprocesses and ``patch_in_process()``."""

    def __init__(self, root: Path, hf_home: Path, *, user: str = "hub-tester", tree_page_size: int = 1000):
        self.root = Path(root)
        self.hf_home = Path(hf_home)
        self.user = user
        self.tree_page_size = tree_page_size
        self.token = DUMMY_TOKEN
        self.store = HubStore(self.root)
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []  # tracebacks of requests that crashed the server (answered 500)
        self.check_token = False  # True: any token but `token` is refused with 401, as the Hub does
        self._faults: list[tuple[str, str]] = []  # (method, path pattern) of requests to drop unanswered
        self._record_lock = threading.Lock()
        self._httpd: _HubHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("HubServer is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def drop_once(self, method: str, path_pattern: str) -> None:
        """Close the connection of the next `method` request whose path matches the fnmatch `path_pattern`
        without answering it (a server dying mid-upload)."""
        with self._record_lock:
            self._faults.append((method, path_pattern))

    def take_fault(self, method: str, path: str) -> bool:
        with self._record_lock:
            for fault in self._faults:
                if fault[0] == method and fnmatch.fnmatch(path, fault[1]):
                    self._faults.remove(fault)
                    return True
        return False

    def record(self, request: RecordedRequest) -> None:
        with self._record_lock:
            self.requests.append(request)

    def start(self) -> HubServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.hf_home.mkdir(parents=True, exist_ok=True)
        self._httpd = _HubHTTPServer(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self, **extra: str | None) -> dict[str, str]:
        """Environment for a client subprocess: this server, an empty HF_HOME, a dummy token, no Xet.

        ``extra`` overrides variables; a value of None removes one (e.g. ``HF_TOKEN=None``).
        """
        env = {k: v for k, v in os.environ.items() if k not in _OVERRIDING_ENV}
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY") or env.get("no_proxy"), "127.0.0.1", "localhost"]))
        env.update(
            HF_ENDPOINT=self.url,
            HF_HOME=str(self.hf_home),
            HF_TOKEN=self.token,
            HF_HUB_OFFLINE="0",
            TRANSFORMERS_OFFLINE="0",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_UPDATE_CHECK="1",
            NO_PROXY=no_proxy,
            no_proxy=no_proxy,
        )
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run_client(self, code: str, *args: str, timeout: float = 180, **extra_env: str | None) -> str:
        """Run ``python -c code *args`` as a fresh client process with `env`; return its stdout.

        A failing client raises AssertionError carrying its stderr, so the test shows why.
        """
        result = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=self.env(**extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"client process exited with {result.returncode}:\n{result.stderr[-6000:]}")
        return result.stdout

    def patch_in_process(self, monkeypatch: Any) -> None:
        """Point this process's already imported huggingface_hub (and transformers) at the server.

        huggingface_hub reads its environment once, at import, into `huggingface_hub.constants` and a
        module-level `HfApi`; transformers caches its own `HfApi` and the remote-code module folder.
        A subprocess started with `env()` needs none of this and is the more faithful setup.
        """
        from huggingface_hub import constants, hf_api

        current = dict(os.environ)
        for key, value in self.env().items():
            if current.get(key) != value:
                monkeypatch.setenv(key, value)
        for key in _OVERRIDING_ENV:
            monkeypatch.delenv(key, raising=False)
        home = str(self.hf_home)
        hub_cache = os.path.join(home, "hub")
        values = {
            "ENDPOINT": self.url,
            "HUGGINGFACE_CO_URL_TEMPLATE": self.url + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_URL_HOSTS": constants.HF_URL_HOSTS | {"127.0.0.1"},
            "HF_HOME": home,
            "HF_HUB_CACHE": hub_cache,
            "HUGGINGFACE_HUB_CACHE": hub_cache,
            "HF_ASSETS_CACHE": os.path.join(home, "assets"),
            "HUGGINGFACE_ASSETS_CACHE": os.path.join(home, "assets"),
            "HF_XET_CACHE": os.path.join(home, "xet"),
            "HF_TOKEN_PATH": os.path.join(home, "token"),
            "HF_STORED_TOKENS_PATH": os.path.join(home, "stored_tokens"),
            "AGENT_HARNESSES_PATH": os.path.join(home, ".agent_harnesses.json"),
            "HF_HUB_OFFLINE": False,
            "HF_HUB_DISABLE_TELEMETRY": True,
            "HF_HUB_DISABLE_XET": True,
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
        }
        for name, value in values.items():
            monkeypatch.setattr(constants, name, value)
        monkeypatch.setattr(hf_api.api, "endpoint", self.url)
        transformers_hub = sys.modules.get("transformers.utils.hub")
        if transformers_hub is not None:
            monkeypatch.setattr(transformers_hub, "_hf_api", None)
            modules_cache = os.path.join(home, "modules")
            monkeypatch.setattr(transformers_hub, "HF_MODULES_CACHE", modules_cache)
            dynamic = sys.modules.get("transformers.dynamic_module_utils")
            if dynamic is not None and hasattr(dynamic, "HF_MODULES_CACHE"):
                monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", modules_cache)
