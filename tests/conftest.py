"""Shared fixtures: small synthetic data, seeded generators, a tiny trained checkpoint."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from spikevae.data import Preprocessing

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one thread each, no oversubscription
    torch.set_num_threads(1)


def load_script(rel: str):
    """A script of the repository (``simulations/rf_mapping.py``, ...) as a module, without running it."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], root / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def assert_dandi_clean(path) -> None:
    """nwbinspector with DANDI's configuration: no CRITICAL and no BEST_PRACTICE_VIOLATION message; the file reads
    back with pynwb and claims no animal (the default subject is NCBI's 'synthetic construct')."""
    from nwbinspector import inspect_nwbfile, load_config
    from pynwb import NWBHDF5IO

    msgs = list(inspect_nwbfile(nwbfile_path=str(path), config=load_config("dandi")))
    bad = [(m.check_function_name, m.message) for m in msgs if m.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION")]
    assert not bad, bad
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert nwb.subject.species.endswith("NCBITaxon_32630") and "no animal" in nwb.subject.description
        assert "simulation" in nwb.session_description


def run_cli(main, argv):
    """Run a command's ``main`` and return its exit status (argparse errors included)."""
    try:
        return main(argv)
    except SystemExit as exc:  # argparse exits directly
        return exc.code


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def small_patches():
    """Whitened patches from two shipped photographs (fast to build), 8 x 8."""
    from spikevae.data import image_patches, natural_images

    imgs = natural_images(("camera", "moon", "grass"))
    prep = Preprocessing(patch_size=8, downsample=1, whiten_f0=0.3)  # native resolution: small images, fast fits
    return image_patches({k: imgs[k] for k in ("camera", "moon")}, {"grass": imgs["grass"]}, prep,
                         4000, 1000, np.random.default_rng(0), source="test")


@pytest.fixture
def hostile_file(tmp_path):
    """A torch file whose unpickling would create `marker` (it must never exist)."""
    import pathlib

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    path = tmp_path / "hostile.pt"
    torch.save({"format": "spikevae.checkpoint", "x": Payload()}, path)
    assert not marker.exists()
    return path, marker


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, small_patches):
    """A P-VAE (K = 16, 8 x 8 patches) trained for 2 epochs; path to its checkpoint."""
    from spikevae.models.training import TrainConfig, fit
    from spikevae.models.vae import VAEConfig

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    fit(VAEConfig(n_latents=16, patch_size=8), TrainConfig(epochs=2, batch_size=200, method="exact"),
        small_patches, path, progress=False)
    return path


@pytest.fixture(autouse=True)
def _reset_brian_state():
    """Brian2 global state (device, codegen target, clock, scope) reset before every test, checked after.

    Library functions must restore what they found (``spikevae.brian._state.brian_state``): a test that
    leaves the device or target changed fails here.
    """
    import sys

    if "brian2" in sys.modules:
        from spikevae.brian._state import reset_brian

        reset_brian()
    yield
    if "brian2" in sys.modules:
        import brian2
        from brian2.devices.device import get_device

        leaked = get_device().__class__.__name__ != "RuntimeDevice" or brian2.prefs.codegen.target != "auto"
        from spikevae.brian._state import reset_brian

        reset_brian()
        assert not leaked, "a library call left Brian2's device or code-generation target changed"
