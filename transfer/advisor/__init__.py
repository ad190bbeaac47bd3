"""The source advisor: one learned, calibrated estimate of each source's gain for a target, from every ranking
method's score and what measured transfer already knows. One module per role:

- `transfer.advisor.features`: the pair features (method z-scores and percentiles, task descriptors, priors from
  other targets' measured gains), with the measurement-free part computed once;
- `transfer.advisor.learner`: `SourceAdvisor` (a scikit-learn estimator; learner chosen by nested
  leave-one-target-out error) and `advise_target`, the entry point;
- `transfer.advisor.intervals`: CV+ intervals over targets (Barber et al. 2021);
- `transfer.advisor.verification`: re-ranking by a few measured fine-tunes;
- `transfer.advisor.evaluation`: gains from measured runs and the strict leave-one-target-out harness;
- `transfer.advisor.best_arm`: sequential measurement as best-arm identification (`GainPosterior`, top-two Thompson
  sampling, `identify_best`), the measuring step of ``recommend``;
- `transfer.advisor.simulation`: ``recommend`` and its alternatives replayed on measured seeds (`replay_target`).
"""

from transfer.advisor.best_arm import GainPosterior, Identified, identify_best, top_two_thompson
from transfer.advisor.evaluation import leave_one_target_out, mean_gains, seed_gains
from transfer.advisor.features import (
    BEST_RANKING_METHOD,
    CHEAP_INPUTS,
    DEFAULT_INPUTS,
    PairFeatures,
    describe_tasks,
    descriptor_features,
    method_features,
    prior_features,
    profile_similarity,
)
from transfer.advisor.intervals import cv_plus_interval
from transfer.advisor.learner import Advice, SourceAdvisor, advise_target, candidate_learners, nested_loto_predictions
from transfer.advisor.verification import verified_ranking

__all__ = [
    "BEST_RANKING_METHOD", "CHEAP_INPUTS", "DEFAULT_INPUTS", "Advice", "GainPosterior", "Identified", "PairFeatures",
    "SourceAdvisor",
    "advise_target", "candidate_learners", "cv_plus_interval", "describe_tasks", "descriptor_features",
    "identify_best", "leave_one_target_out", "mean_gains", "method_features", "nested_loto_predictions",
    "prior_features", "profile_similarity", "seed_gains", "top_two_thompson", "verified_ranking",
]  # fmt: skip
