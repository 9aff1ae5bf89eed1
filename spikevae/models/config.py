"""The configurations of the P-VAE family (model and training) and the one factory of (model config, training config).

Plain dataclasses, apart from the torch modules and the training loop, so that a checkpoint's fields can be
validated (:func:`typed_config`) without them: the torch-free reader (:mod:`spikevae.models.linear`) uses the
same checks as :mod:`spikevae.models.checkpoint`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

from ..data import DATASETS
from ..errors import ArgumentError, CheckpointError

FAMILIES = ("poisson", "gaussian", "laplace", "gaussian-relu", "categorical")
#: families whose relaxation temperature is annealed during training (the others keep t = 1)
ANNEALED = ("poisson", "categorical")
ENCODERS = ("lin", "conv", "mlp")
DECODERS = ("lin", "conv")


@dataclass(frozen=True)
class VAEConfig:
    """Model configuration (all sizes in units, pixels or channels)."""

    family: str = "poisson"  # latent family: poisson | gaussian | laplace | gaussian-relu | categorical
    n_latents: int = 512  # K, number of latent units
    patch_size: int = 16  # input side length, pixels (input is patch_size x patch_size)
    encoder: str = "lin"  # lin | conv | mlp
    decoder: str = "lin"  # lin | conv
    n_channels: int = 32  # conv: first-level channels; mlp: hidden expansion factor / 2
    bias: bool = False  # biases on the linear encoder / decoder layers
    init_scale: float = 0.05  # std of the N(0, s) init of linear encoder/decoder weights
    prior_log_high: float = -4.0  # log r ~ U(-6, prior_log_high) at init (reference: -4 lin decoder)
    logdr_clamp: float = 10.0  # soft upper clamp on log δr
    lograte_clamp: float = 5.3  # soft upper clamp on log λ (max rate ≈ e^5.3 ≈ 200 per window)

    def validate(self) -> VAEConfig:
        """Raise :class:`~spikevae.errors.ArgumentError` naming the bad field; return self."""
        for name in ("init_scale", "prior_log_high", "logdr_clamp", "lograte_clamp"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ArgumentError(f"{name} must be a finite number, got {v!r}")
        if not 1 <= int(self.n_latents) <= 100_000:
            raise ArgumentError(f"n_latents must be between 1 and 100,000, got {self.n_latents!r}")
        if not 2 <= int(self.patch_size) <= 256:
            raise ArgumentError(f"patch_size must be between 2 and 256, got {self.patch_size!r}")
        if not 1 <= int(self.n_channels) <= 1024:
            raise ArgumentError(f"n_channels must be between 1 and 1024, got {self.n_channels!r}")
        if self.logdr_clamp <= 0 or self.lograte_clamp <= 0:
            raise ArgumentError("logdr_clamp and lograte_clamp must be > 0")
        if self.family not in FAMILIES:
            raise ArgumentError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.encoder not in ENCODERS:
            raise ArgumentError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.decoder not in DECODERS:
            raise ArgumentError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if int(self.n_latents) <= 0:
            raise ArgumentError(f"n_latents must be > 0, got {self.n_latents!r}")
        if int(self.patch_size) <= 1:
            raise ArgumentError(f"patch_size must be > 1, got {self.patch_size!r}")
        if "conv" in (self.encoder, self.decoder):
            p = int(self.patch_size)
            if p < 4 or p & (p - 1):
                raise ArgumentError(f"conv layers need a power-of-two patch_size >= 4, got {p}")
        if self.init_scale <= 0:
            raise ArgumentError(f"init_scale must be > 0, got {self.init_scale!r}")
        return self

    @property
    def n_pixels(self) -> int:
        """D, pixels per input."""
        return int(self.patch_size) ** 2


__all__ = ["Schedule", "TrainConfig", "VAEConfig", "make_configs", "typed_config", "DATASET_PATCH", "FAMILY_TEMP_STOP",
           "DECODER_PRIOR_LOG_HIGH", "FAMILIES", "ANNEALED", "ENCODERS", "DECODERS"]


class Schedule(NamedTuple):
    """The training schedules at one optimiser step: the one convention of every training loop (the P-VAE's
    :func:`spikevae.models.training.schedule`, the iP-VAE's :func:`spikevae.models.ipvae.schedule`)."""

    temperature: float  # relaxation temperature of the sampler
    beta: float  # weight of the KL term
    lr_factor: float  # learning rate / the configured peak rate
    clamp: float = 1.0  # progress of the iP-VAE's soft ceilings from their start to their final values, 0..1


@dataclass(frozen=True)
class TrainConfig:
    """Training run configuration."""

    dataset: str = "natural"  # natural | digits | mnist | images
    images: str | None = None  # folder of images for dataset='images'
    mnist: str | None = None  # folder of MNIST IDX files for dataset='mnist'
    n_train: int = 100_000  # training patches (natural / images)
    n_val: int = 10_000  # validation patches (natural / images)
    epochs: int = 300  # passes over the training set
    batch_size: int = 1000  # samples per step
    lr: float = 0.005  # peak learning rate (Adamax)
    lr_min: float = 1e-5  # final learning rate of the cosine decay
    warmup_epochs: float = 5.0  # linear learning-rate warm-up, epochs
    beta: float = 1.0  # final KL weight β
    beta_start: float = 1e-4  # initial KL weight
    temp_start: float = 1.0  # initial relaxation temperature
    temp_stop: float = 0.05  # final relaxation temperature
    anneal_portion: float = 0.5  # fraction of iterations over which β and t are annealed
    method: str = "mc"  # mc (one relaxed sample) | exact (closed-form expectation, linear decoder)
    straight_through: bool = False  # hard counts forward once annealing is done (the paper's "ST")
    grad_clip: float = 500.0  # global gradient-norm clip
    p_trunc: float = 1e-5  # relaxed-sampler truncation probability (poisson.n_exp_for_rate)
    seed: int = 0  # one seed; data, init, shuffling and validation draws get child seeds

    def validate(self) -> TrainConfig:
        """Raise :class:`~spikevae.errors.ArgumentError` naming the bad field; return self."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ArgumentError(f"{f.name} must be finite, got {v!r}")
        checks = [
            (0 <= self.seed < 2**32, f"seed must be in [0, 2**32), got {self.seed}"),
            (self.epochs <= 10**6, f"epochs must be at most 1e6, got {self.epochs}"),
            (self.n_train <= 10**8 and self.n_val <= 10**8, "n_train and n_val must be at most 1e8"),
            (0 < self.p_trunc < 0.5, f"p_trunc must be in (0, 0.5), got {self.p_trunc}"),
            (self.warmup_epochs >= 0, f"warmup epochs must be >= 0, got {self.warmup_epochs}"),
            (self.dataset in DATASETS, f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}"),
            (self.method in ("mc", "exact"), f"method must be 'mc' or 'exact', got {self.method!r}"),
            (self.epochs > 0, f"epochs must be > 0, got {self.epochs}"),
            (self.batch_size > 0, f"batch size must be > 0, got {self.batch_size}"),
            (0 < self.lr <= 1 and 0 <= self.lr_min <= self.lr,
             f"need 0 < lr <= 1 and 0 <= lr_min <= lr, got lr {self.lr!r} and lr_min {self.lr_min!r}"),
            (0 <= self.beta <= 1e6 and 0 <= self.beta_start <= 1e6, "beta must be in [0, 1e6]"),
            (1e-3 <= self.temp_start <= 100 and 1e-3 <= self.temp_stop <= 100,
             f"temperatures must be in [0.001, 100], got {self.temp_start!r} and {self.temp_stop!r}"),
            (0 < self.anneal_portion <= 1, f"anneal portion must be in (0, 1], got {self.anneal_portion}"),
            (self.grad_clip > 0, f"grad clip must be > 0, got {self.grad_clip}"),
            (self.n_train > 0 and self.n_val > 0, "n_train and n_val must be > 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ArgumentError(msg)
        return self


#: input side per data set whose inputs have a fixed size (the others use ``patch_size``)
DATASET_PATCH = {"digits": 8, "mnist": 28}


#: final relaxation temperature per family where it differs from TrainConfig's
FAMILY_TEMP_STOP = {"categorical": 0.1}


#: upper end of the U(-6, ·) prior log-rate init per decoder (the reference: -4 for lin, -2 for conv)
DECODER_PRIOR_LOG_HIGH = {"lin": -4.0, "conv": -2.0}


def make_configs(family: str = "poisson", latents: int = 512, arch: str = "lin|lin", patch_size: int = 16,
                 **train_fields) -> tuple[VAEConfig, TrainConfig]:
    """The one factory of (model config, training config) for ``train``, ``sweep`` and notebooks.

    Applies the defaults that depend on other choices: the input size of fixed-size data sets
    (:data:`DATASET_PATCH`), the categorical family's final temperature (:data:`FAMILY_TEMP_STOP`,
    unless ``temp_stop`` is given) and the prior-rate init per decoder (:data:`DECODER_PRIOR_LOG_HIGH`).
    ``train_fields`` are :class:`TrainConfig` fields. Both configs are validated
    (:class:`~spikevae.errors.ArgumentError` naming the field).
    """
    enc, sep, dec = str(arch).partition("|")
    if not sep or not enc or not dec:
        raise ArgumentError(f"arch must look like 'lin|lin' (encoder|decoder), got {arch!r}")
    unknown = sorted(set(train_fields) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ArgumentError(f"unknown training settings {unknown}")
    fields = dict(train_fields)
    if fields.get("temp_stop") is None:
        fields.pop("temp_stop", None)
        if family in FAMILY_TEMP_STOP:
            fields["temp_stop"] = FAMILY_TEMP_STOP[family]
    try:
        tc = TrainConfig(**fields).validate()
        patch = DATASET_PATCH.get(tc.dataset, patch_size)
        mc = VAEConfig(family=family, n_latents=latents, patch_size=patch, encoder=enc, decoder=dec,
                       prior_log_high=DECODER_PRIOR_LOG_HIGH.get(dec, VAEConfig.prior_log_high)).validate()
    except TypeError as exc:
        raise ArgumentError(str(exc)) from None
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None
    if tc.method == "exact" and mc.decoder != "lin":
        raise ArgumentError("method 'exact' needs a linear decoder (arch '...|lin')")
    return mc, tc


def typed_config(cls, d, where: str):
    """A frozen config dataclass from a stored dict: unknown fields, wrong types and non-finite numbers refused."""
    if not isinstance(d, dict):
        raise CheckpointError(f"{where} must be a dict of fields, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise CheckpointError(f"{where} has unknown fields {unknown}")
    for name, v in d.items():
        default = fields[name].default
        kind = type(default)
        if default is None:
            ok = v is None or isinstance(v, str)
        elif kind is bool:
            ok = isinstance(v, bool)
        elif kind is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif kind is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        else:
            ok = isinstance(v, kind)
        if not ok:
            want = {bool: "a boolean", int: "an integer", float: "a finite number", str: "a string"}.get(kind, "a string or None")
            raise CheckpointError(f"{where} field {name!r} must be {want}, got {v!r}")
    try:
        return cls(**d).validate()
    except ValueError as exc:
        raise CheckpointError(f"{where} is invalid: {exc}") from None
