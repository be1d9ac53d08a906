"""A stand-in agent for trying the service without any AI CLI installed.

Prints a few lines over about a second and a half, echoing the prompt.
Usage: python demo_agent.py PROMPT [--lines N] [--delay SECONDS]
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt")
    parser.add_argument("--lines", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.3)
    args = parser.parse_args(argv)

    print(f"demo agent received: {args.prompt}", flush=True)
    for step in range(1, args.lines + 1):
        time.sleep(args.delay)
        print(
            f"step {step}/{args.lines}: thinking about {args.prompt[:40]!r}", flush=True
        )
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
