"""The same service as a Ray Serve deployment: each replica runs the FastAPI app of `gamer-hf serve`
(validation, micro-batcher, metrics), built on the replica so that the checkpoint loads there.

The app keeps no state between requests, so replicas scale out behind Ray's HTTP proxy (or any
load balancer in front of plain `gamer-hf serve` processes). Needs the `ray` extra.

    python recipes/serve/ray_serve.py --model gamer --replicas 2 --port 8000
    curl -s -X POST http://127.0.0.1:8000/v1/recommend -H 'content-type: application/json' \\
         -d '{"history": [["click", "sku1"]], "top_k": 5}'

SIGTERM or Ctrl-C shuts the deployment and the local Ray instance down.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import ray
from ray import serve

from gamer_hf.serve import ModelOptions, ServeSettings, create_app, load_recommender


@serve.ingress()
class GamerService:
    """One replica: the checkpoint behind the service's app, its batcher sized by `settings`."""

    def __init__(self, options: ModelOptions, settings: ServeSettings) -> None:
        self.options, self.settings = options, settings

    def __serve_build_asgi_app__(self):
        return create_app(lambda: load_recommender(self.options), self.settings)


def deployment(options: ModelOptions, settings: ServeSettings, replicas: int = 1, cpus_per_replica: float = 1.0):
    """The bound Ray Serve application; replicas take as many concurrent requests as a batch holds."""
    return serve.deployment(
        GamerService, name="gamer", num_replicas=replicas, ray_actor_options={"num_cpus": cpus_per_replica},
        max_ongoing_requests=max(8, 2 * settings.max_batch_size),
    ).bind(options, settings)


def init_ray(num_cpus: int, attempts: int = 3) -> None:
    """`ray.init`, tried again when Ray's node misses its start-up window.

    Ray waits a fixed 30 s for its raylet to register (not configurable), which a heavily loaded machine
    can miss; a fresh start usually makes it. Any other error is raised at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False)
            return
        except Exception as error:  # Ray raises a bare Exception for this one
            if "timed out during startup" not in str(error) or attempt == attempts:
                raise
            ray.shutdown()
            print(f"Ray's node did not start in time (attempt {attempt} of {attempts}); starting it again",
                  file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="GAMER checkpoint folder, or a Hub repo id")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-history", type=int, default=None)
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"])
    parser.add_argument("--start-attempts", type=int, default=3,
                        help="starts of the local Ray node before giving up (each has Ray's fixed 30 s)")
    args = parser.parse_args()

    options = ModelOptions(model=args.model, revision=args.revision, device=args.device,
                           max_history=args.max_history, num_beams=args.num_beams)
    settings = ServeSettings(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms)
    init_ray(max(1, int(args.replicas * args.cpus_per_replica)), args.start_attempts)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(deployment(options, settings, args.replicas, args.cpus_per_replica), name="gamer", route_prefix="/")
        print(f"serving {args.model} on http://{args.host}:{args.port} with {args.replicas} replica(s)", flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
