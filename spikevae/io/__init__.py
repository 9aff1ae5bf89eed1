"""Files: spike trains to NWB (pynwb) and Neo (NixIO) and back, the LCA dictionary format, atomic writers, run
folders that delete or replace only what their run created.

``write_nwb`` / ``read_nwb`` and ``write_neo`` / ``read_neo`` turn a
:class:`~spikevae.records.SpikeTrains` record into a file and back, losslessly. Nothing here
imports torch.
"""
from .dictionary import load_dictionary, save_dictionary
from .files import (
    atomic_write,
    check_free_space,
    file_record,
    file_sha256,
    provenance,
    write_csv,
    write_json,
    write_npz,
    write_text,
)
from .neo import read_neo, to_neo_block, write_neo
from .nwb import read_nwb, write_nwb
from .run_folder import MANIFEST, RunFolder

__all__ = ["write_nwb", "read_nwb", "write_neo", "read_neo", "to_neo_block", "save_dictionary", "load_dictionary",
           "atomic_write", "check_free_space", "RunFolder", "MANIFEST", "write_json", "write_text", "write_npz", "write_csv",
           "file_sha256", "file_record", "provenance"]
