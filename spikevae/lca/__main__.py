"""``python -m spikevae.lca``: the command is :mod:`spikevae.cli.lca`."""
from ..cli.lca import main

raise SystemExit(main())
