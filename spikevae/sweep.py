"""``python -m spikevae.sweep``: the command is :mod:`spikevae.cli.sweep`."""
from .cli.sweep import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
