"""`python -m auditor.world generate|serve`: make a benchmark world, serve its shop.

    python -m auditor.world generate /tmp/world --size 10000 --seed 7
    python -m auditor.world serve /tmp/world --port 8000
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one sub-command."""
    ap = argparse.ArgumentParser(prog="python -m auditor.world", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write a world (master, feeds, labels) into a folder")
    g.add_argument("out", type=Path)
    g.add_argument("--size", type=int, default=200, help="SKUs (200 to 1,000,000)")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--drift-rate", type=float, default=0.08)
    g.add_argument("--benign-rate", type=float, default=0.15)
    g.add_argument("--now", help="ISO 8601 time the world is 'now' (default: this hour, UTC)")
    g.add_argument("--base-url", default="http://shop.local",
                   help="where the shop will be served (the server rewrites it to its own)")
    s = sub.add_parser("serve", help="serve a generated world's shop until Ctrl-C")
    s.add_argument("world", type=Path)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--crawl-delay", type=float, default=1.0,
                   help="Crawl-delay in robots.txt (negative: no Crawl-delay line)")
    s.add_argument("--log-file", type=Path, help="append every request as a JSON line")
    for name, helptext in (("delay", "seconds slept before every answer"),
                           ("error-rate", "share of requests answered 503"),
                           ("rate-limit-rate", "share of requests answered 429"),
                           ("captcha-rate", "share answered 200 with a robot check page"),
                           ("truncate-rate", "share whose body is cut in half")):
        s.add_argument(f"--{name}", type=float, default=0.0, help=helptext)
    s.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds in 429/503")
    args = ap.parse_args(argv)
    if args.cmd == "generate":
        from auditor.world.generate import generate_world

        t0 = time.perf_counter()
        now = datetime.fromisoformat(args.now) if args.now else None
        m = generate_world(args.out, size=args.size, seed=args.seed, drift_rate=args.drift_rate,
                           benign_rate=args.benign_rate, now=now, base_url=args.base_url)
        print(f"{m.size} SKUs, {m.products} products, {m.labels} labels, {m.benign} benign "
              f"variations in {time.perf_counter() - t0:.1f}s -> {args.out}")
        return 0
    from auditor.world.shop import Faults, ShopServer

    faults = Faults(delay=args.delay, error_rate=args.error_rate,
                    rate_limit_rate=args.rate_limit_rate, captcha_rate=args.captcha_rate,
                    truncate_rate=args.truncate_rate, retry_after=args.retry_after)
    with ShopServer(args.world, host=args.host, port=args.port, faults=faults,
                    crawl_delay=None if args.crawl_delay < 0 else args.crawl_delay,
                    log_file=args.log_file) as shop:
        print(f"serving {args.world} at {shop.base_url} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
