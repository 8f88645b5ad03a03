"""Publishing GAMER checkpoints against the local Hub server, read back by fresh client processes:
with gamer_hf installed, without it (remote code), and through model.push_to_hub / Trainer."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from gamer_hf.modeling import pipeline_gamer
from gamer_hf.cli import main as cli_main
from gamer_hf.hub import CheckpointError, build_upload_folder, push_to_hub
from gamer_hf.hub.push import _without_local_paths
from gamer_hf.loading import load_gamer
from gamer_hf.modeling import GamerForCausalLM, GamerTokenizerFast
from gamer_hf.modeling.configuration_gamer import AUTO_MAP, REMOTE_CODE_FILES

from .conftest import BRANCH, GAMER_CLI_REPO, GAMER_REPO, ONE_THREAD, Published, copy_checkpoint
from .hub_server import HubServer

UPLOADED = {
    "README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json",
    "tokenizer.json", "item_index.safetensors", "pipeline_gamer.py", "handler.py", "gamer_training.json",
    "eval_results.json", "eval_ndcg10.png", "gamer_checksums.json", *REMOTE_CODE_FILES,
}

LOAD_FROM_HUB = r"""
import json, re, sys
mode, repo_id, histories, behavior = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
remote = mode == "remote"
if remote:
    sys.modules["gamer_hf"] = None  # importing gamer_hf now fails, as for a user who never installed it
import torch
from huggingface_hub import ModelCard

# 1. the card's usage snippet, exactly as written, first (nothing registered yet in this process)
card = ModelCard.load(repo_id)
snippets = re.findall(r"```python\n(.*?)```", card.content, flags=re.DOTALL)
exec(compile(snippets[1 if remote else 0], "model-card-usage", "exec"), {})

# 2. every Auto class and the pipeline, compared with the local checkpoint by the test
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, pipeline
kwargs = {"trust_remote_code": True} if remote else {}
config = AutoConfig.from_pretrained(repo_id, **kwargs)
tokenizer = AutoTokenizer.from_pretrained(repo_id, **kwargs)
lm = AutoModelForCausalLM.from_pretrained(repo_id, **kwargs).eval()
base = AutoModel.from_pretrained(repo_id, **kwargs).eval()
recommender = pipeline("next-item-recommendation", model=repo_id, device="cpu", **kwargs)
histories = [[tuple(pair) for pair in history] for history in histories]
batch = tokenizer.encode_histories(histories, behavior=behavior, return_tensors="pt")
with torch.no_grad():
    hidden = base(**batch).last_hidden_state
print(json.dumps({
    "gamer_hf_loaded": "gamer_hf" in sys.modules and sys.modules["gamer_hf"] is not None,
    "modules": [type(obj).__module__ for obj in (config, tokenizer, lm, base, recommender)],
    "classes": [type(obj).__name__ for obj in (lm, base, tokenizer)],
    "hidden": hidden.tolist(),
    "recs": lm.recommend(tokenizer, histories, behavior=behavior, top_k=5),
    "pipeline": recommender(histories, behavior=behavior, top_k=5),
}))
"""

def _last_json(stdout: str) -> Any:
    return json.loads(stdout.strip().splitlines()[-1])


def _repo_files(server: HubServer, repo_id: str, revision: str = "main") -> dict[str, str]:
    """path -> sha256 of a branch, read from the server's storage."""
    repo = server.store.get("model", repo_id, authenticated=True)
    return {path: entry.sha256 for path, entry in repo.resolve(revision).files.items()}


def _read(server: HubServer, repo_id: str, path: str, revision: str = "main") -> str:
    repo = server.store.get("model", repo_id, authenticated=True)
    return repo.file_path(repo.resolve(revision), path).read_text(encoding="utf-8")


def _commits(server: HubServer, repo_id: str, revision: str = "main") -> int:
    repo = server.store.get("model", repo_id, authenticated=True)
    return len(repo.history(repo.resolve(revision)))


@pytest.fixture(scope="module")
def local(gamer_checkpoint: Path) -> tuple[GamerForCausalLM, GamerTokenizerFast]:
    return load_gamer(gamer_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def histories(local) -> list[list[tuple[str, str]]]:
    _, tokenizer = local
    items, behaviors = tokenizer.item_ids, list(tokenizer.behaviors)
    return [[(behaviors[0], items[0]), (behaviors[1], items[5])], [(behaviors[2], items[7])],
            [(behaviors[i % 3], items[(3 * i) % len(items)]) for i in range(9)]]


def _expected(local, histories) -> dict[str, Any]:
    model, tokenizer = local
    behavior = tokenizer.target_behavior
    batch = tokenizer.encode_histories(histories, behavior=behavior, return_tensors="pt")
    with torch.no_grad():
        hidden = model.model(**batch).last_hidden_state
    return {"hidden": hidden, "recs": model.recommend(tokenizer, histories, behavior=behavior, top_k=5)}


def _assert_same_recommendations(got: list, expected: list) -> None:
    """Same items in the same order; scores equal up to float summation order across processes."""
    rows = [[(item, score) for item, score in row] for row in got]
    assert [[item for item, _ in row] for row in rows] == [[item for item, _ in row] for row in expected]
    assert [score for row in rows for _, score in row] == pytest.approx(
        [score for row in expected for _, score in row], abs=1e-5)


def _pipeline_rows(rows: list[list[dict[str, Any]]]) -> list[list[tuple[str, float]]]:
    return [[(entry["item_id"], entry["score"]) for entry in row] for row in rows]


# ----- what was pushed -----
def test_push_uploads_a_complete_checkpoint_in_one_commit(published: Published) -> None:
    first = published.api_results[0]
    files = _repo_files(published.server, GAMER_REPO)
    assert set(files) == UPLOADED | {".gitattributes"}
    assert set(first["files"]) == UPLOADED and first["changed"]
    assert _commits(published.server, GAMER_REPO) == 2  # the repo's initial commit + one upload
    assert files["eval_ndcg10.png"] == hashlib.sha256((published.checkpoint / "eval_ndcg10.png").read_bytes()).hexdigest()
    for name in ("eval_results.json", "gamer_training.json"):  # the same records, local folders cut to their names
        local = json.loads((published.checkpoint / name).read_text())
        assert json.loads(_read(published.server, GAMER_REPO, name)) == _without_local_paths(local)
    assert files["pipeline_gamer.py"] == hashlib.sha256(Path(pipeline_gamer.__file__).read_bytes()).hexdigest()
    checksums = json.loads(_read(published.server, GAMER_REPO, "gamer_checksums.json"))  # the uploaded weights' digest
    assert checksums["model.safetensors"]["sha256"] == files["model.safetensors"]
    config = json.loads(_read(published.server, GAMER_REPO, "config.json"))
    tokenizer_config = json.loads(_read(published.server, GAMER_REPO, "tokenizer_config.json"))
    assert config["auto_map"] == AUTO_MAP
    assert tokenizer_config["auto_map"] == {"AutoTokenizer": AUTO_MAP["AutoTokenizer"]}



def test_pushing_the_same_checkpoint_twice_creates_no_commit(published: Published) -> None:
    first, second, _ = published.api_results
    assert second["commit_oid"] == first["commit_oid"] and not second["changed"]
    commit_posts = [r for r in published.server.requests if r.method == "POST" and "/commit/" in r.path
                    and f"/{GAMER_REPO}/" in r.path]
    assert len(commit_posts) == 2  # the first push to main, the branch push; none for the repeat


def test_branch_push_creates_the_branch_and_leaves_main_untouched(published: Published) -> None:
    first, _, dev = published.api_results
    main_files, dev_files = _repo_files(published.server, GAMER_REPO), _repo_files(published.server, GAMER_REPO, BRANCH)
    repo = published.server.store.get("model", GAMER_REPO, authenticated=True)
    assert dev["revision"] == BRANCH and dev["changed"]
    assert repo.resolve("main").id == first["commit_oid"] and repo.resolve(BRANCH).id == dev["commit_oid"]
    assert "eval_results.json" in main_files and "eval_results.json" not in dev_files  # stale facts removed
    assert dev_files["model.safetensors"] == main_files["model.safetensors"]
    assert main_files["README.md"] != dev_files["README.md"]
    assert "not recorded" in _read(published.server, GAMER_REPO, "README.md", BRANCH)


def test_cli_push_publishes_the_same_files(published: Published) -> None:
    api, cli = _repo_files(published.server, GAMER_REPO), _repo_files(published.server, GAMER_CLI_REPO)
    del api["README.md"], cli["README.md"]  # the card names its own repo
    assert cli == api
    assert GAMER_CLI_REPO in published.cli_stdout
    assert GAMER_CLI_REPO in _read(published.server, GAMER_CLI_REPO, "README.md")


# ----- what users load -----
@pytest.mark.parametrize("mode", ["installed", "remote"])
def test_repo_loads_like_the_local_checkpoint(published: Published, local, histories, mode: str, tmp_path) -> None:
    """A fresh client (empty HF_HOME) runs the card's snippet, then every Auto class and the pipeline."""
    _, tokenizer = local
    stdout = published.server.run_client(LOAD_FROM_HUB, mode, GAMER_REPO, json.dumps(histories),
                                         tokenizer.target_behavior, HF_HOME=str(tmp_path / "hf_home"), **ONE_THREAD)
    got, expected = _last_json(stdout), _expected(local, histories)

    assert got["gamer_hf_loaded"] == (mode == "installed")
    in_gamer_hf = [module.startswith("gamer_hf.") for module in got["modules"]]
    assert in_gamer_hf == ([True] * 5 if mode == "installed" else [False] * 5), got["modules"]
    assert got["classes"] == ["GamerForCausalLM", "GamerModel", "GamerTokenizerFast"]
    assert torch.allclose(torch.tensor(got["hidden"]), expected["hidden"], atol=1e-6)
    _assert_same_recommendations(got["recs"], expected["recs"])
    _assert_same_recommendations(_pipeline_rows(got["pipeline"]), expected["recs"])


# huggingface_hub itself PUTs LFS bytes with httpx2's deprecated `data=`; not our concern.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
def test_model_and_trainer_push_to_hub_make_loadable_repos(hub_in_process: HubServer, gamer_checkpoint: Path,
                                                           histories, tmp_path: Path) -> None:
    """Transformers' own paths: model.push_to_hub + tokenizer.push_to_hub, save_pretrained(push_to_hub=True),
    and Trainer(push_to_hub=True),
    whose push_to_hub saves the model and its processing class (the tokenizer) and uploads both."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, pipeline

    model, tokenizer = load_gamer(gamer_checkpoint, device="cpu")
    behavior = tokenizer.target_behavior
    expected = model.recommend(tokenizer, histories, behavior=behavior, top_k=5)
    model.push_to_hub("org/model-push")
    tokenizer.push_to_hub("org/model-push")
    model.save_pretrained(tmp_path / "saved", push_to_hub=True, repo_id="org/save-push")
    tokenizer.save_pretrained(tmp_path / "saved", push_to_hub=True, repo_id="org/save-push")
    arguments = TrainingArguments(output_dir=str(tmp_path / "trainer"), push_to_hub=True,
                                  hub_model_id="org/trainer-push", report_to="none", use_cpu=True)
    Trainer(model=model, processing_class=tokenizer, args=arguments).push_to_hub()

    for repo_id in ("org/model-push", "org/save-push", "org/trainer-push"):
        files = _repo_files(hub_in_process, repo_id)
        assert set(files) >= {"config.json", "model.safetensors", "tokenizer_config.json", "item_index.safetensors",
                              *REMOTE_CODE_FILES}, repo_id
        assert json.loads(_read(hub_in_process, repo_id, "config.json"))["auto_map"] == AUTO_MAP
        loaded, loaded_tokenizer = AutoModelForCausalLM.from_pretrained(repo_id), AutoTokenizer.from_pretrained(repo_id)
        assert loaded.recommend(loaded_tokenizer, histories, behavior=behavior, top_k=5) == expected
        recommender = pipeline("next-item-recommendation", model=repo_id, device="cpu")
        assert _pipeline_rows(recommender(histories, behavior=behavior, top_k=5)) == expected


# ----- refusals: nothing reaches the server -----
def _corrupt_header(folder: Path) -> None:
    path = folder / "model.safetensors"
    path.write_bytes((10**12).to_bytes(8, "little") + path.read_bytes()[8:])


def _pickled_weights(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


def _foreign_eval_results(folder: Path) -> None:
    path = folder / "eval_results.json"
    report = json.loads(path.read_text())
    report["behaviors"] = {"view": 0, "buy": 1}
    path.write_text(json.dumps(report))


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda folder: (folder / "model.safetensors").unlink(), "model.safetensors"),
        (lambda folder: (folder / "config.json").unlink(), "config.json"),
        (lambda folder: (folder / "tokenizer_config.json").unlink(), "tokenizer_config.json"),
        (lambda folder: (folder / "item_index.safetensors").unlink(), "item_index.safetensors"),
        (_corrupt_header, "model.safetensors"),
        (_pickled_weights, "pytorch_model.bin"),
        (lambda folder: (folder / "gamer_training.json").write_text("{truncated"), "gamer_training.json"),
        (_foreign_eval_results, "eval_results.json"),
    ],
    ids=["no-weights", "no-config", "no-tokenizer", "no-item-index", "corrupt-header", "pickle-only",
         "corrupt-training-info", "foreign-eval-results"],
)
def test_incomplete_checkpoint_is_refused_before_any_upload(hub_in_process: HubServer, gamer_checkpoint: Path,
                                                            tmp_path: Path, damage, named: str) -> None:
    folder = copy_checkpoint(gamer_checkpoint, tmp_path / "broken")
    damage(folder)
    with pytest.raises(CheckpointError, match=re.escape(named)):
        push_to_hub(folder, "org/broken")
    assert hub_in_process.requests == []
    assert not list(hub_in_process.root.rglob("refs.json"))  # no repo was created


def test_in_memory_model_needs_its_tokenizer(local, tmp_path: Path) -> None:
    model, _ = local
    with pytest.raises(ValueError, match="tokenizer="):
        build_upload_folder(model, tmp_path / "upload", "org/name")


# ----- the upload folder without a server -----
def test_model_object_and_folder_stage_the_same_model(local, gamer_checkpoint: Path, tmp_path: Path) -> None:
    model, tokenizer = local
    from_folder = build_upload_folder(gamer_checkpoint, tmp_path / "folder", "org/name")
    from_object = build_upload_folder(model, tmp_path / "object", "org/name", tokenizer=tokenizer)
    facts = {"gamer_training.json", "eval_results.json", "eval_ndcg10.png"}
    assert set(from_folder) - set(from_object) == facts
    for name in set(from_object) - {"README.md"}:
        assert (tmp_path / "folder" / name).read_bytes() == (tmp_path / "object" / name).read_bytes(), name
    assert not (tmp_path / "folder" / "checkpoints").exists()


def test_cli_dry_run_writes_the_upload_folder_only(gamer_checkpoint: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "upload"
    assert cli_main(["push", "--model", str(gamer_checkpoint), "--repo_id", "org/name", "--dry_run", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == UPLOADED
    assert "nothing uploaded" in capsys.readouterr().out


def test_published_records_hold_no_local_paths(gamer_checkpoint: Path, tmp_path: Path) -> None:
    """gamer_training.json / eval_results.json name the user's folders; the Hub copy keeps only their last part."""
    build_upload_folder(gamer_checkpoint, tmp_path / "upload", "org/name")
    for name in ("gamer_training.json", "eval_results.json"):
        local = (gamer_checkpoint / name).read_text()
        assert str(gamer_checkpoint.parent) in local or "/" in local
        published = (tmp_path / "upload" / name).read_text()
        assert str(tmp_path) not in published and str(gamer_checkpoint.parent) not in published
        assert json.loads(published).keys() == json.loads(local).keys()
