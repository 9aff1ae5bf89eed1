"""``python -m spikevae.train``: the command is :mod:`spikevae.cli.train`."""
from .cli.train import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
