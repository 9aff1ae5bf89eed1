"""Workflows: what a command does, as library calls a notebook can make too (simulate into a run folder,
receptive-field mapping, evaluation, sweeps)."""
