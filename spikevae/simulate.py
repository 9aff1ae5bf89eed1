"""``python -m spikevae.simulate``: the command is :mod:`spikevae.cli.simulate`."""
from .cli.simulate import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
