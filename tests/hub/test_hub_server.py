"""The local Hub server against the real clients: huggingface_hub (in fresh subprocesses with an empty
HF_HOME, and in-process) and transformers' from_pretrained / push_to_hub."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from .hub_server import HubServer

UPLOAD = """
import json, sys
from huggingface_hub import HfApi
repo_id, jobs = sys.argv[1], sys.argv[2:]  # jobs: folder, revision ("" = main), folder, revision, ...
api = HfApi()
api.create_repo(repo_id, exist_ok=True)
oids = []
for folder, revision in zip(jobs[::2], jobs[1::2]):
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    oids.append(api.upload_folder(folder_path=folder, repo_id=repo_id, revision=revision or None).oid)
print(json.dumps(oids))
"""

READ = """
import hashlib, json, os, sys
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
repo_id, revisions = sys.argv[1], sys.argv[2:]  # "" = the default branch
api = HfApi()
digest = lambda path: hashlib.sha256(open(path, "rb").read()).hexdigest()
results = {}
for revision in revisions:
    revision = revision or None
    info = api.model_info(repo_id, revision=revision, files_metadata=True)
    files = api.list_repo_files(repo_id, revision=revision)
    snapshot = snapshot_download(repo_id, revision=revision)
    results[revision or ""] = {
        "sha": info.sha,
        "lfs": sorted(s.rfilename for s in info.siblings if s.lfs is not None),
        "sizes": {s.rfilename: s.size for s in info.siblings},
        "files": files,
        "downloads": {name: digest(hf_hub_download(repo_id, name, revision=revision)) for name in files},
        "snapshot_path": snapshot,
        "snapshot": {
            os.path.relpath(os.path.join(root, name), snapshot): digest(os.path.join(root, name))
            for root, _, names in os.walk(snapshot) for name in names
        },
        "commits": len(api.list_repo_commits(repo_id, revision=revision)),
    }
print(json.dumps(results))
"""

FAILING_CALLS = """
import json, sys
from huggingface_hub import HfApi, hf_hub_download
repo_id, private_id = sys.argv[1:3]
calls = {
    "repo_info_of_missing_repo": lambda: HfApi().model_info("org/missing"),
    "download_from_missing_repo": lambda: hf_hub_download("org/missing", "config.json"),
    "download_of_missing_file": lambda: hf_hub_download(repo_id, "missing.txt"),
    "download_at_missing_revision": lambda: hf_hub_download(repo_id, ".gitattributes", revision="missing"),
    "repo_info_at_missing_revision": lambda: HfApi().model_info(repo_id, revision="missing"),
    "private_repo_without_token": lambda: HfApi(token=False).model_info(private_id),
    "create_existing_repo": lambda: HfApi().create_repo(repo_id),
}
raised = {}
for case, call in calls.items():
    try:
        call()
        raised[case] = []
    except Exception as error:
        raised[case] = [cls.__name__ for cls in type(error).__mro__]
print(json.dumps(raised))
"""

TRANSFORMERS_ROUNDTRIP = """
import json, sys
import torch
from huggingface_hub import HfApi
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
folder = sys.argv[1]
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=32, n_positions=16))
model.save_pretrained(folder)
HfApi().create_repo("org/uploaded-gpt2")
HfApi().upload_folder(folder_path=folder, repo_id="org/uploaded-gpt2")
model.push_to_hub("org/pushed-gpt2")
results = {}
for repo_id in ("org/uploaded-gpt2", "org/pushed-gpt2"):
    config = AutoConfig.from_pretrained(repo_id)
    loaded = AutoModelForCausalLM.from_pretrained(repo_id)
    state = loaded.state_dict()
    results[repo_id] = {
        "model_type": config.model_type,
        "n_embd": config.n_embd,
        "class": type(loaded).__name__,
        "same_weights": all(torch.equal(value, state[key]) for key, value in model.state_dict().items()),
    }
print(json.dumps(results))
"""


def _last_json(stdout: str) -> Any:
    """The client scripts print their result as JSON on their last stdout line."""
    return json.loads(stdout.strip().splitlines()[-1])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) safetensors file, the binary that must travel through the LFS batch API."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "model.safetensors"
    save_file({"embedding": torch.arange(24, dtype=torch.float32).reshape(4, 6)}, str(path))
    return path


@pytest.fixture
def folder(tmp_path: Path, weights_file: Path) -> Path:
    """A small model folder: a text file, a JSON file and a safetensors file."""
    folder = tmp_path / "to_upload"
    (folder / "nested").mkdir(parents=True)
    (folder / "notes.txt").write_text("version one\n")
    (folder / "nested" / "config.json").write_text(json.dumps({"model_type": "demo", "hidden": 8}))
    (folder / "model.safetensors").write_bytes(weights_file.read_bytes())
    return folder


def _upload(hub: HubServer, repo_id: str, *jobs: tuple[Path, str]) -> list[str]:
    """Upload folders (each to a revision, "" = main) in one client process; their commit ids."""
    return _last_json(hub.run_client(UPLOAD, repo_id, *[str(part) for job in jobs for part in job]))


def _read(hub: HubServer, repo_id: str, *revisions: str) -> dict:
    """What a fresh client sees of each revision ("" = main)."""
    return _last_json(hub.run_client(READ, repo_id, *(revisions or ("",))))


def _local_digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): _sha256(p) for p in folder.rglob("*") if p.is_file()}


def test_uploaded_folder_reads_back_identically(hub_server: HubServer, folder: Path) -> None:
    [oid] = _upload(hub_server, "org/demo", (folder, ""))
    read = _read(hub_server, "org/demo")[""]

    local = _local_digests(folder)
    assert read["sha"] == oid
    assert sorted(read["files"]) == sorted([".gitattributes", *local])
    assert read["lfs"] == ["model.safetensors"]
    assert read["sizes"]["model.safetensors"] == (folder / "model.safetensors").stat().st_size
    assert {name: read["downloads"][name] for name in local} == local
    assert {name: read["snapshot"][name] for name in local} == local
    assert Path(read["snapshot_path"]).is_relative_to(hub_server.hf_home)
    assert read["snapshot_path"].endswith(oid)
    puts = [r.path for r in hub_server.requests if r.method == "PUT"]
    assert puts == [f"/org/demo.git/info/lfs/objects/{local['model.safetensors']}"]  # the only LFS upload
    assert not [r for r in hub_server.requests if "xet" in r.path]


def test_uploading_the_same_folder_twice_changes_nothing(hub_server: HubServer, folder: Path) -> None:
    first, second = _upload(hub_server, "org/demo", (folder, ""), (folder, ""))

    assert second == first
    assert _read(hub_server, "org/demo")[""]["commits"] == 2  # the repo's initial commit + one upload
    assert len([r for r in hub_server.requests if r.path.endswith("/commit/main")]) == 1


def test_push_to_branch_leaves_main_untouched(hub_server: HubServer, folder: Path, tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "notes.txt").write_text("version two\n")
    (changed / "extra.txt").write_text("only on dev\n")

    main_oid, dev_oid = _upload(hub_server, "org/demo", (folder, ""), (changed, "dev"))
    read = _read(hub_server, "org/demo", "", "dev")

    main, dev = read[""], read["dev"]
    assert (main["sha"], dev["sha"]) == (main_oid, dev_oid)
    assert "extra.txt" not in main["files"] and "extra.txt" in dev["files"]
    assert main["downloads"]["notes.txt"] == _sha256(folder / "notes.txt")
    assert dev["downloads"]["notes.txt"] == _sha256(changed / "notes.txt")
    assert dev["downloads"]["model.safetensors"] == main["downloads"]["model.safetensors"]
    assert dev["commits"] == main["commits"] + 1


@pytest.fixture(scope="module")
def failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Exception classes (MRO names) a fresh client raises for each failing call, from one process."""
    base = tmp_path_factory.mktemp("hub_failures")
    with HubServer(base / "repos", base / "hf_home") as server:
        server.store.create("model", "org/present", private=False)
        server.store.create("model", "org/secret", private=True)
        raised = _last_json(server.run_client(FAILING_CALLS, "org/present", "org/secret"))
    assert not server.errors, "\n".join(server.errors)
    return raised


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("repo_info_of_missing_repo", "RepositoryNotFoundError"),
        ("download_from_missing_repo", "RepositoryNotFoundError"),
        ("download_of_missing_file", "EntryNotFoundError"),
        ("download_at_missing_revision", "RevisionNotFoundError"),
        ("repo_info_at_missing_revision", "RevisionNotFoundError"),
        ("private_repo_without_token", "RepositoryNotFoundError"),
        ("create_existing_repo", "HfHubHTTPError"),
    ],
)
def test_failures_raise_the_matching_client_error(failures: dict[str, list[str]], case: str, expected: str) -> None:
    assert expected in failures[case], f"{case} raised {failures[case] or 'nothing'}"


@pytest.mark.slow
def test_transformers_from_pretrained_through_the_server(hub_server: HubServer, tmp_path: Path) -> None:
    """One client process (transformers imports dominate): a model published with upload_folder and
    with push_to_hub, each loaded back with AutoConfig / AutoModelForCausalLM from an empty cache."""
    results = _last_json(hub_server.run_client(TRANSFORMERS_ROUNDTRIP, str(tmp_path / "gpt2")))

    expected = {"model_type": "gpt2", "n_embd": 8, "class": "GPT2LMHeadModel", "same_weights": True}
    assert results == {"org/uploaded-gpt2": expected, "org/pushed-gpt2": expected}
    downloads = {r.path for r in hub_server.requests if r.method == "GET" and "/resolve/" in r.path}
    for repo_id in results:
        fetched = {p.rsplit("/", 1)[-1] for p in downloads if p.startswith(f"/{repo_id}/")}
        assert fetched >= {"config.json", "model.safetensors"}
    assert any(r.path == "/api/validate-yaml" for r in hub_server.requests)  # push_to_hub's model card


# huggingface_hub itself PUTs LFS bytes with httpx2's deprecated `data=`; not the server's concern.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
def test_in_process_client_and_paginated_tree(hub_in_process: HubServer) -> None:
    from huggingface_hub import CommitOperationAdd, HfApi, RepoFolder, hf_hub_download

    hub_in_process.tree_page_size = 2
    api = HfApi()
    api.create_repo("org/inproc")
    contents = {"a.txt": b"a", "dir/b.txt": b"b", "dir/sub/c.txt": b"c", "dir/sub/d.bin": b"\0binary"}
    operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=c) for p, c in contents.items()]
    api.create_commit("org/inproc", operations=operations, commit_message="add files")

    listing = api.list_repo_tree("org/inproc", recursive=True)
    recursive = {entry.path: isinstance(entry, RepoFolder) for entry in listing}
    shallow = [entry.path for entry in api.list_repo_tree("org/inproc", path_in_repo="dir")]
    downloaded = Path(hf_hub_download("org/inproc", "dir/sub/d.bin"))

    assert recursive == {".gitattributes": False, **dict.fromkeys(contents, False), "dir": True, "dir/sub": True}
    assert sorted(shallow) == ["dir/b.txt", "dir/sub"]
    assert downloaded.read_bytes() == contents["dir/sub/d.bin"]
    assert downloaded.is_relative_to(hub_in_process.hf_home)
    assert len([r for r in hub_in_process.requests if "/tree/" in r.path]) > 3  # 6 entries in pages of 2


def test_chunked_lfs_upload_and_ranged_download(hub_server: HubServer) -> None:
    """Protocol corners no test above reaches: a chunked request body and a resumed (Range) download."""
    repo = hub_server.store.create("model", "org/raw", private=False)
    data = bytes(range(256)) * 300
    oid = hashlib.sha256(data).hexdigest()
    connection = http.client.HTTPConnection(hub_server.url.removeprefix("http://"), timeout=10)
    connection.putrequest("PUT", f"/org/raw.git/info/lfs/objects/{oid}")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    for start in range(0, len(data), 10_000):
        chunk = data[start : start + 10_000]
        connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    connection.send(b"0\r\n\r\n")
    assert connection.getresponse().read() == b"{}"

    lines = [
        {"key": "header", "value": {"summary": "raw commit"}},
        {"key": "lfsFile", "value": {"path": "blob.bin", "algo": "sha256", "oid": oid, "size": len(data)}},
        {"key": "file", "value": {"path": "a.txt", "encoding": "base64", "content": base64.b64encode(b"txt").decode()}},
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines)
    headers = {"Authorization": f"Bearer {hub_server.token}", "Content-Type": "application/x-ndjson"}
    connection.request("POST", "/api/models/org/raw/commit/main", body, headers)
    commit = json.loads(connection.getresponse().read())["commitOid"]
    connection.request("GET", "/org/raw/resolve/main/blob.bin", headers={"Range": "bytes=1000-"})
    response = connection.getresponse()

    assert response.status == 206
    assert response.read() == data[1000:]
    assert response.getheader("X-Repo-Commit") == commit == repo.resolve("main").id
    assert response.getheader("X-Linked-Etag") == f'"{oid}"'
    assert response.getheader("Content-Range") == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert (repo.file_path(repo.resolve("main"), "a.txt")).read_bytes() == b"txt"
