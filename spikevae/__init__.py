"""spikevae."""
