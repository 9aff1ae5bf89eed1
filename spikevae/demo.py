"""``python -m spikevae.demo``: the command is :mod:`spikevae.cli.demo`."""
from .cli.demo import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
