"""Analysis: the metrics of a code (:mod:`.metrics`), spike statistics (Elephant on Neo objects), metabolic cost,
receptive fields and the V1 battery, sparsity and geometry.

Everything here takes arrays or :class:`~spikevae.records.SpikeTrains` records; nothing imports torch.
"""
from .geometry import (
                       R2_GOOD,
                       KNNResult,
                       gabor_likeness,
                       knn_accuracy,
                       pca_alignment,
                       principal_components,
                       shattering_dimensionality,
                       spatial_spread,
)
from .metabolic import PRESETS, EnergyModel, metabolic_table
from .metrics import code_metrics, distance, fraction_explained, r2_mean, r2_per_patch, r2_pooled
from .receptive_fields import GaborFit, GratingTuning, fit_gabor, gabor, grating_tuning, sta
from .sparsity import lifetime_sparsity, population_sparsity, treves_rolls
from .stats import (
                       count_correlations,
                       fano_factors,
                       isi_cv,
                       noise_correlations,
                       psth,
                       spike_summary,
                       trial_trains,
                       unit_rates,
)

__all__ = ["unit_rates", "isi_cv", "trial_trains", "fano_factors", "count_correlations", "noise_correlations", "psth",
           "spike_summary", "EnergyModel", "PRESETS", "metabolic_table", "sta", "grating_tuning", "GratingTuning",
           "gabor", "fit_gabor", "GaborFit", "treves_rolls", "lifetime_sparsity", "population_sparsity", "code_metrics",
           "r2_pooled", "r2_mean", "r2_per_patch", "fraction_explained", "distance",
           "KNNResult", "knn_accuracy", "shattering_dimensionality", "principal_components", "gabor_likeness",
           "spatial_spread", "pca_alignment", "R2_GOOD"]
