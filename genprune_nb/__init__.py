"""genprune_nb: model connectomes (Kotar & Tuckute 2025) — generational pruning priors for data-efficient GPTs.

The study in four steps: ``data.prepare`` (three disjoint corpora), ``generations.run_outer_loop`` (the connectome),
``generations.run_inner_loop`` (Connectome / RandomConnectome / NoConnectome), then ``evals`` and ``alignment``
over the kept checkpoints. ``pipeline.run_pipeline`` runs the numbered notebooks that walk through them.
"""
__version__ = "0.1.0"
