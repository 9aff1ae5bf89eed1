"""Analysis: spike statistics (Elephant on Neo objects), metabolic cost, receptive fields, sparsity and geometry.

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
from .receptive_fields import GaborFit, GratingTuning, fit_gabor, gabor, grating_tuning, sta
from .sparsity import code_metrics, lifetime_sparsity, population_sparsity, treves_rolls
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
           "KNNResult", "knn_accuracy", "shattering_dimensionality", "principal_components", "gabor_likeness",
           "spatial_spread", "pca_alignment", "R2_GOOD"]
