"""Analysis of spike trains: statistics (Elephant on Neo objects) and metabolic cost."""
from .metabolic import PRESETS, EnergyModel, metabolic_table
from .stats import (count_correlations, fano_factors, isi_cv, noise_correlations, psth, spike_summary,
                    unit_rates)

__all__ = ["unit_rates", "isi_cv", "fano_factors", "count_correlations", "noise_correlations", "psth",
           "spike_summary", "EnergyModel", "PRESETS", "metabolic_table"]
