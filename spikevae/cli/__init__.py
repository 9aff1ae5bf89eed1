"""The commands, thin: parse, call the library, print. ``python -m spikevae.<name>`` runs them; :mod:`.common`
holds what every command and script shares (the parser, the one-line error exit, argument types)."""
