"""genprune_nb: model connectomes (Kotar & Tuckute 2025) — generational pruning priors for data-efficient GPTs.

The study in four steps: ``data.prepare`` (three disjoint corpora), ``study.generations.run_outer_loop`` (the
connectome), ``study.generations.run_inner_loop`` (Connectome / RandomConnectome / NoConnectome), then
``evals.evaluate`` over the kept checkpoints (benchmarks, reading times, brain encoding). ``study.pipeline`` runs
the numbered notebooks that walk through them. The subpackages are floors, each built on the ones below it
(README, "Architecture").
"""
__version__ = "0.1.0"
