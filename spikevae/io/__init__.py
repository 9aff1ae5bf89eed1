"""Export and import of spike trains: NWB (pynwb) and Neo (NixIO).

``write_nwb`` / ``read_nwb`` and ``write_neo`` / ``read_neo`` turn a
:class:`~spikevae.records.SpikeTrains` record into a file and back, losslessly.
"""
from .neo import read_neo, to_neo_block, write_neo
from .nwb import read_nwb, write_nwb

__all__ = ["write_nwb", "read_nwb", "write_neo", "read_neo", "to_neo_block"]
