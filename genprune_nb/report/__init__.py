"""Figures and tables for people: the shared plot helpers and palette, benchmark summaries, reading-time plots,
data-efficiency plots, and the paper's Figure 1 panels beside its numbers."""
