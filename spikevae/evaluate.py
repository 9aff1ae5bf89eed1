"""``python -m spikevae.evaluate``: the command is :mod:`spikevae.cli.evaluate`."""
from .cli.evaluate import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
