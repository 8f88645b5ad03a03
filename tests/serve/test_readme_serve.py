"""The README's "Serve" commands, run as written: the server command (on a free port) and its curl example."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

from .conftest import ServerProcess
from .test_app import assert_same

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _serve_lines() -> tuple[list[str], list[str]]:
    block = re.search(r"```bash\n(.*?)```", README.split("## Serve", 1)[1], re.S).group(1)
    [serve] = [shlex.split(line) for line in block.splitlines() if line.startswith("gamer-hf serve")]
    [curl] = [shlex.split(line) for line in block.splitlines() if line.startswith("curl ")]
    return serve, curl


def test_readme_curl_example_against_the_readme_server(checkpoint: Path, loaded) -> None:
    serve, curl = _serve_lines()
    flags = dict(zip(serve[2::2], serve[3::2], strict=True))
    assert flags.pop("--model") == "gamer" and flags.pop("--port") == "8000"
    # the tour's checkpoint is the test's tiny one here, on a free port
    server = ServerProcess(checkpoint, *(part for pair in flags.items() for part in pair))
    try:
        server.wait_ready()
        url = next(arg for arg in curl if arg.startswith("http://"))
        curl[curl.index(url)] = url.replace(":8000", f":{server.port}")
        answer = json.loads(subprocess.run(curl, capture_output=True, text=True, timeout=60, check=True).stdout)
        body = json.loads(curl[curl.index("-d") + 1])
        model, tokenizer = loaded
        [expected] = model.recommend(tokenizer, [[tuple(p) for p in body["history"]]], behavior=body["behavior"],
                                     top_k=body["top_k"], num_beams=20)
        assert_same(answer, expected)
        assert answer["model"] == checkpoint.name and answer["truncated"] is False
    finally:
        assert server.stop() == 0
