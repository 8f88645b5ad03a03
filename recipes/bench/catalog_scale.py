"""Million-item catalogues: the item index file, the trie and recommend()'s constraint, semantic IDs.

Synthetic catalogues (numeric string ids as in Taobao, 4 levels x 256 random distinct codes):
1. index: size on disk and load time of `item_index.safetensors` against the JSON index of the
   release before it, each loaded by its own code (the JSON one by the tokenizer of git ref
   `--baseline`, checked out into a temporary folder) in a fresh process, with peak RSS;
2. trie: `ItemTrie` build time and tensor memory, and the constraint's share of recommend():
   the time inside `ItemTrie.allowed` / `step` over the whole call, for a `small` model;
3. semantic_ids: the whole semantic-ID job (`build_tokenizer_from_inputs`: embeddings, each RQ-KMeans
   level, collisions, writing) on a Taobao-shaped catalogue generated in a fresh process (numeric ids,
   ~425 items per category, a user per 4 items with 10-40 interactions in 2 categories): wall time per
   step, peak RSS, collision rate per level, then the written index's size and load time;
4. semantic_ids_baseline: the same job run by the package of git ref `--job_baseline` (extracted into a
   temporary folder), on the same generated catalogue: old vs new code in one script;
5. power_iterations: the PPMI-SVD by sklearn's randomized_svd and by `power_svd` with 1, 2, 3, 5 power
   iterations, each quantized the same way (sampled balanced RQ-KMeans): time, collisions, neighbour agreement;
6. quantizer: the same embeddings quantized again by the other k-means path (the previous release's
   mini-batch code past 200k items, this code's sampled path below), so the two are compared.

    python recipes/bench/catalog_scale.py                        # 1M and 4M, everything
    python recipes/bench/catalog_scale.py --sizes 100000 --sections index trie   # quick
    python recipes/bench/catalog_scale.py --sizes 100000 1000000 4000000 --sections semantic_ids quantizer
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast, ItemTrie
from gamer_hf.modeling.item_index_gamer import ItemIndex

from code_at import package_at  # a sibling script

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "catalog_scale.json"
BEHAVIORS = {"click": 0, "cart": 1, "buy": 2}
SECTIONS = ("index", "trie", "semantic_ids", "semantic_ids_baseline", "power_iterations", "quantizer")
LEVELS, CODEBOOK = 4, 256

LOAD_SCRIPT = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from modeling.tokenization_gamer import GamerTokenizerFast
start, cpu = time.perf_counter(), time.process_time()
tok = GamerTokenizerFast.from_pretrained(sys.argv[2])
loaded, loaded_cpu = time.perf_counter() - start, time.process_time() - cpu
items = [tok.item_ids[i] for i in range(0, len(tok.item_ids), max(1, len(tok.item_ids) // 3200))][:3200]
start, cpu = time.perf_counter(), time.process_time()
low = next(iter(tok.behaviors))
ids = tok.encode_histories([[(low, item) for item in items[i:i + 50]] for i in range(0, len(items), 50)],
                           behavior="buy")["input_ids"]
encoded, encoded_cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"load_s": loaded, "load_cpu_s": loaded_cpu, "encode_64x50_s": encoded, "encode_64x50_cpu_s": encoded_cpu, "items": len(tok.item_ids),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def synthetic_catalogue(size: int, seed: int) -> tuple[list[str], np.ndarray]:
    """`size` numeric string ids (shuffled, as a log lists them) and distinct random code rows."""
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, CODEBOOK**LEVELS, int(size * 1.01) + 16))
    keys = rng.permutation(keys)[:size]
    codes = np.stack([(keys >> (8 * level)) & 0xFF for level in range(LEVELS)], axis=1)
    ids = [str(v) for v in rng.permutation(size) * 3 + 1_000_000]
    return ids, codes


def _tokenizer(size: int, seed: int = 0) -> GamerTokenizerFast:
    ids, codes = synthetic_catalogue(size, seed)
    return GamerTokenizerFast.from_items(ItemIndex.from_pairs(ids, codes), BEHAVIORS, codebook_size=CODEBOOK)


def _run_json(script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    # run outside the repository: `python -c` puts the working folder first on sys.path, where this tree's
    # gamer_hf would shadow a PYTHONPATH copy of another ref's
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def _baseline_code(ref: str, into: Path) -> Path:
    """The `modeling/` package of git ref `ref`, extracted under `into`."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "modeling"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def index_section(sizes: list[int], repeats: int, baseline: str, baseline_max_items: int) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old_code = _baseline_code(baseline, tmp / "baseline")
        for size in sizes:
            tok = _tokenizer(size)
            binary, legacy = tmp / f"binary{size}", tmp / f"json{size}"
            start = time.perf_counter()
            tok.save_pretrained(binary)
            save_s = time.perf_counter() - start
            legacy.mkdir()
            for name in ("tokenizer_config.json", "tokenizer.json"):
                (legacy / name).write_bytes((binary / name).read_bytes())
            payload = {"item_ids": list(tok.item_ids), "codes": tok.item_code_tensor.tolist()}
            (legacy / "item_index.json").write_text(json.dumps(payload, separators=(",", ":")), encoding="utf-8")
            del tok, payload
            runs = [_run_json(LOAD_SCRIPT, str(ROOT), str(binary)) for _ in range(repeats)]
            loads = [run["load_s"] for run in runs]
            row = {
                "items": size,
                "binary_mib": round((binary / "item_index.safetensors").stat().st_size / 2**20, 1),
                "json_mib": round((legacy / "item_index.json").stat().st_size / 2**20, 1),
                "binary_save_s": round(save_s, 2),
                "binary_load_s": round(min(loads), 2), "binary_load_s_max": round(max(loads), 2),
                "binary_load_cpu_s": round(min(run["load_cpu_s"] for run in runs), 2),
                "binary_encode_64x50_ms": round(1e3 * min(run["encode_64x50_s"] for run in runs), 1),
                "binary_peak_rss_mib": round(max(run["peak_rss_mib"] for run in runs)),
            }
            if size <= baseline_max_items:  # the old code takes many minutes past a million items here
                old = _run_json(LOAD_SCRIPT, str(old_code), str(legacy))
                row |= {"json_load_s_old_code": round(old["load_s"], 2), "json_load_cpu_s_old_code": round(old["load_cpu_s"], 2),
                        "load_speedup": round(old["load_s"] / min(loads), 1),
                        "json_encode_64x50_ms_old_code": round(1e3 * old["encode_64x50_s"], 1),
                        "json_peak_rss_mib_old_code": round(old["peak_rss_mib"])}
            row["size_ratio"] = round(row["json_mib"] / row["binary_mib"], 1)
            out.append(row)
            print(json.dumps(row), flush=True)
    return out


class _Timed:
    """Wraps one trie method on the instance and adds up the seconds spent in it."""

    def __init__(self, trie: ItemTrie, name: str) -> None:
        self.inner, self.seconds, self.calls = getattr(trie, name), 0.0, 0
        setattr(trie, name, self)

    def __call__(self, *args: Any) -> Any:
        start = time.perf_counter()
        result = self.inner(*args)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return result


def trie_section(sizes: list[int], preset: str, batch: int, history: int, beams: int, repeats: int) -> list[dict[str, Any]]:
    out = []
    for size in sizes:
        tok = _tokenizer(size)
        codes = tok.item_code_tensor
        builds = []
        for _ in range(repeats):
            start = time.perf_counter()
            trie = ItemTrie(codes, tok.codebook_sizes)
            builds.append(time.perf_counter() - start)
        tensors = [*trie.edge_keys, *trie.child_ptr, *trie.child_codes, trie.leaf_to_item, trie.item_to_leaf]
        torch.manual_seed(0)
        model = GamerForCausalLM(GamerConfig.from_preset(preset, tokenizer=tok)).eval()
        rng = np.random.default_rng(1)
        ids = tok.item_ids
        histories = [[("click", ids[int(i)]) for i in rng.integers(0, size, history)] for _ in range(batch)]
        cached = ItemTrie.for_tokenizer(tok)
        model.recommend(tok, histories, top_k=10, num_beams=beams)  # warm-up
        totals, shares = [], []
        for _ in range(repeats):
            timers = [_Timed(cached, "allowed"), _Timed(cached, "step")]
            start = time.perf_counter()
            model.recommend(tok, histories, top_k=10, num_beams=beams, batch_size=batch)
            total = time.perf_counter() - start
            constraint = sum(timer.seconds for timer in timers)
            for name, timer in zip(("allowed", "step"), timers):
                setattr(cached, name, timer.inner)
            totals.append(total)
            shares.append(constraint / total)
        row = {
            "items": size, "trie_build_s": round(min(builds), 2), "trie_build_s_max": round(max(builds), 2),
            "trie_mib": round(sum(t.numel() * t.element_size() for t in tensors) / 2**20, 1),
            "preset": preset, "batch": batch, "history": history, "beams": beams,
            "recommend_s": round(min(totals), 3),
            "constraint_share": round(min(shares), 4), "constraint_share_max": round(max(shares), 4),
            "constraint_ms_per_step": round(1e3 * min(totals) * min(shares) / tok.num_levels, 2),
        }
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


CATALOGUE_SCRIPT = r"""
rng = np.random.default_rng(seed)
# Taobao-shaped: numeric ids, ~425 items per category, a user per 4 items whose 10-40 interactions
# (mean 25, ~6 per item) fall in 2 favourite categories, popular items of a category first.
ids = np.sort(rng.choice(10 * size, size, replace=False) + 10 ** len(str(10 * size)))
item_ids = ids.astype(str).tolist()
categories = max(2, size // 425)
category = np.sort(rng.integers(0, categories, size))
start = np.searchsorted(category, np.arange(categories + 1))
users = max(1, size // 4)
lengths = rng.integers(10, 41, users)
user = np.repeat(np.arange(users), lengths)
taste = rng.integers(0, categories, (users, 2))
picked = taste[user, rng.integers(0, 2, len(user))]
offset = (rng.random(len(user)) ** 2 * (start[picked + 1] - start[picked])).astype(np.int64)
positions = np.minimum(start[picked] + offset, size - 1)
names = np.asarray(item_ids, dtype=object)
sequences = [chunk.tolist() for chunk in np.split(names[positions], np.cumsum(lengths)[:-1])]
"""

JOB_SCRIPT = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
import pandas as pd
from gamer_hf.semantic_ids import SemanticIdArguments, SemanticIdInputs, build_tokenizer_from_inputs
size, work, embedding, balanced, seed = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", 0
""" + CATALOGUE_SCRIPT + r"""
items = pd.DataFrame({"item_id": item_ids, "category_id": category})
inputs = SemanticIdInputs(item_ids=item_ids, sequences=sequences, behaviors={"pv": 0, "fav": 1, "cart": 1, "buy": 2},
                          items=items, source="synthetic")
del names, positions, user, picked, offset
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
args = SemanticIdArguments(data="synthetic", out=str(work / "tokenizer"), embedding=embedding, balanced=balanced,
                           seed=seed, overwrite=True)
begin, cpu = time.perf_counter(), time.process_time()
built = build_tokenizer_from_inputs(inputs, args)
wall, cpu = time.perf_counter() - begin, time.process_time() - cpu
report = built.semantic_ids.report
np.save(work / "embeddings.npy", built.embeddings.vectors)  # for the quantizer comparison
print(json.dumps({"items": size, "interactions": int(lengths.sum()), "users": users, "embedding": embedding,
                  "balanced": balanced, "wall_s": wall, "cpu_s": cpu, "timings": report.timings, "write_s": built.write_seconds,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_job_mib": before,
                  "codebook_sizes": report.codebook_sizes, "collision_rate": report.collision_rate,
                  "collision_rate_per_level": report.collision_rate_per_level,
                  "max_collision_group": report.max_collision_group, "items_per_first_code": report.items_per_first_code,
                  "neighbour_agreement": report.neighbour_agreement, "embedding_coverage": report.embedding_coverage,
                  "index_mib": (work / "tokenizer" / "item_index.safetensors").stat().st_size / 2**20}))
"""


POWER_SCRIPT = r"""
import json, sys, time
import numpy as np
from sklearn.utils.extmath import randomized_svd
from gamer_hf.semantic_ids import kmeans
from gamer_hf.semantic_ids.collaborative import ItemPositions, ppmi, power_svd
from gamer_hf.semantic_ids.report import fitting_sizes, neighbour_agreement
from gamer_hf.semantic_ids.rq_kmeans import RQKMeans
size, variants, seed = int(sys.argv[1]), sys.argv[2:], 0
""" + CATALOGUE_SCRIPT + r"""
kmeans.SAMPLED_ABOVE = 0  # every variant on the sampled path, as past 200k items
counts = ItemPositions.encode(sequences, item_ids).cooccurrence(5)
weights = ppmi(counts, keep_zeros=True)
levels, codebook = fitting_sizes(size)
rows = []
for variant in variants:
    start = time.perf_counter()
    if variant == "sklearn":  # what the job runs up to 200k items (and ran at every size before)
        u, s, _ = randomized_svd(weights, n_components=64, n_iter=5, random_state=0)
    else:
        u, s = power_svd(weights, 64, n_iter=int(variant), seed=0)
    svd_s = time.perf_counter() - start
    vectors = u * np.sqrt(s)[None, :]
    vectors = (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    codes = RQKMeans(levels, codebook, balanced=True, seed=0).fit_encode(vectors)
    agreement = neighbour_agreement(codes[:, 0], counts)
    rows.append({"items": size, "variant": variant, "svd_s": svd_s, "top_singular_values": s[:3].tolist(),
                 "collision_rate_per_level": [1 - len(np.unique(codes[:, :l + 1], axis=0)) / size for l in range(levels)],
                 "neighbour_agreement": agreement.agreement, "chance": agreement.chance})
print(json.dumps({"items": size, "counts_nnz": counts.nnz, "variants": rows}))
"""


def power_iteration_section(sizes: list[int], variants: list[str]) -> list[dict[str, Any]]:
    """PPMI-SVD of each size's catalogue by sklearn's randomized_svd (5 power iterations) and by `power_svd` with
    each number of iterations, each quantized the same way: the quality check behind `POWER_ITERATIONS`."""
    out = []
    for size in sizes:
        row = _rounded(_run_json(POWER_SCRIPT, str(size), *variants))
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def semantic_id_section(sizes: list[int], embedding: str, balanced: bool, work: Path,
                        code: Path | None = None) -> list[dict[str, Any]]:
    """The whole semantic-ID job per size in a fresh process, then its index loaded in another one; with `code`
    (a `code_at.package_at` folder) the job runs that code instead of this tree's."""
    out = []
    env = None if code is None else {"PYTHONPATH": str(code)}
    for size in sizes:
        folder = work / f"job{size}" if code is None else work / f"baseline_job{size}"
        folder.mkdir(parents=True, exist_ok=True)
        row = _run_json(JOB_SCRIPT, str(size), str(folder), embedding, "1" if balanced else "0", env=env)
        if code is not None:
            row["gamer_hf"] = str(code)
        load = _run_json(LOAD_SCRIPT, str(ROOT), str(folder / "tokenizer"))
        row |= {"index_load_s": load["load_s"], "index_load_cpu_s": load["load_cpu_s"],
                "index_load_peak_rss_mib": load["peak_rss_mib"]}
        row = _rounded(row)
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


RQ_SCRIPT = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from quantizer import kmeans, rq_kmeans
x = np.load(sys.argv[2])
sizes, variant = json.loads(sys.argv[3]), sys.argv[4]
if variant == "sampled":  # the current code's sampled path below its size threshold
    kmeans.SAMPLED_ABOVE = 0
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
codes = rq_kmeans.RQKMeans(len(sizes), sizes, balanced=sys.argv[5] == "1", seed=0).fit_encode(x)
wall = time.perf_counter() - start
per_level = [1 - len(np.unique(codes[:, :level + 1], axis=0)) / len(codes) for level in range(len(sizes))]
first = np.bincount(codes[:, 0], minlength=sizes[0])
print(json.dumps({"variant": variant, "items": len(x), "wall_s": wall, "collision_rate_per_level": per_level,
                  "level1_max_over_mean": float(first.max() / first[first > 0].mean()),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_fit_mib": before}))
"""


def _quantizer_code(ref: str | None, into: Path) -> Path:
    """`kmeans.py` and `rq_kmeans.py` of git ref `ref` (None: this tree) as a package `quantizer` under `into`."""
    package = into / "quantizer"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    for name in ("kmeans.py", "rq_kmeans.py"):
        path = f"gamer_hf/semantic_ids/{name}"
        text = (ROOT / path).read_text(encoding="utf-8") if ref is None else subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{ref}:{path}"], capture_output=True, text=True, check=True).stdout
        (package / name).write_text(text, encoding="utf-8")
    return into


def quantizer_section(jobs: list[dict[str, Any]], sizes: list[int], baseline: str, balanced: bool,
                      work: Path) -> list[dict[str, Any]]:
    """Each size's job embeddings quantized again by the other path: the previous release's mini-batch code past
    200k items, this code's sampled path below it (the job itself took the other one)."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        previous, current = _quantizer_code(baseline, Path(tmp) / "previous"), _quantizer_code(None, Path(tmp) / "current")
        for job in (job for job in jobs if job["items"] in sizes):
            base_sizes = job["codebook_sizes"][: len(job["collision_rate_per_level"])]
            variant, code = ("sampled", current) if job["items"] <= 200_000 else ("previous_minibatch", previous)
            row = _run_json(RQ_SCRIPT, str(code), str(work / f"job{job['items']}" / "embeddings.npy"),
                            json.dumps(base_sizes), variant, "1" if balanced else "0")
            row = _rounded(row | {"codebook_sizes": base_sizes})
            out.append(row)
            print(json.dumps(row), flush=True)
    return out


def _baseline_jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        code = package_at(args.job_baseline, Path(tmp) / "baseline")
        return semantic_id_section(args.sizes, args.embedding, args.balanced, args.work, code)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default="726d3429f2a2df320f9c444a7d44df5451149a59",
                        help="git ref whose tokenizer reads the JSON index (the last one before the binary index)")
    parser.add_argument("--baseline_max_items", type=int, default=1_000_000,
                        help="largest catalogue the old JSON loader is timed on")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--embedding", default="collaborative", choices=("collaborative", "hybrid", "auto"),
                        help="semantic_ids: item embeddings of the job (Taobao-shaped: category ids and co-occurrence)")
    parser.add_argument("--balanced", action=argparse.BooleanOptionalAction, default=True,
                        help="semantic_ids: balanced RQ-KMeans")
    parser.add_argument("--quantizer_baseline", default="0bb13328b5d52f17c0368fd54fae265d74a2c3f0",
                        help="git ref of the mini-batch k-means the quantizer section compares against")
    parser.add_argument("--job_baseline", default="c74736b",
                        help="semantic_ids_baseline: git ref whose gamer_hf runs the same job (before the 4M work)")
    parser.add_argument("--power_variants", nargs="+", default=["sklearn", "1", "2", "3", "5"],
                        help="power_iterations: 'sklearn' (randomized_svd, 5 iterations) and power_svd iteration counts")
    parser.add_argument("--compare_sizes", type=int, nargs="*", default=[100_000, 1_000_000],
                        help="quantizer: job sizes whose embeddings the other k-means path quantizes again")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "catalog_scale",
                        help="semantic_ids: where each job writes its tokenizer and embeddings")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results |= {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "load_average_start": os.getloadavg()[0],
    }
    runs = {
        "index": lambda: index_section(args.sizes, args.repeats, args.baseline, args.baseline_max_items),
        "trie": lambda: trie_section(args.sizes, args.preset, args.batch, args.history, args.beams, args.repeats),
        "semantic_ids": lambda: semantic_id_section(args.sizes, args.embedding, args.balanced, args.work),
        "semantic_ids_baseline": lambda: _baseline_jobs(args),
        "power_iterations": lambda: power_iteration_section(args.sizes, args.power_variants),
        "quantizer": lambda: quantizer_section(results.get("semantic_ids", []), args.compare_sizes,
                                               args.quantizer_baseline, args.balanced, args.work),
    }
    for section in args.sections:  # written after each section: a long run keeps what it measured
        rows = {row["items"]: row for row in results.get(section, [])}  # sizes measured by earlier runs stay
        results[section] = sorted((rows | {row["items"]: row for row in runs[section]()}).values(),
                                  key=lambda row: row["items"])
        results["load_average_end"] = os.getloadavg()[0]
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
