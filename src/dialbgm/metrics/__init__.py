"""The numbers: rankings from scores, agreement with human ranks, consensus over judgements,
order-bias diagnostics and paired statistics. Pure: numpy in, numbers out, no other dialbgm import."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "AGGREGATIONS",
    "CONSENSUS_RULES",
    "DEFAULT_CONSENSUS",
    "KEMENY_MAX_CANDIDATES",
    "METRICS",
    "AgreementError",
    "AnnotatedItem",
    "BiasTally",
    "Judgement",
    "ScoreAggregator",
    "aggregate_scores",
    "chance_levels",
    "concordance",
    "consensus_ranks",
    "flip_rate",
    "has_ties",
    "holm",
    "human_ceiling",
    "is_competition_ranking",
    "item_ceiling",
    "item_metrics",
    "krippendorff_alpha",
    "n_groups",
    "one_blas_thread",
    "paired_compare",
    "pairwise_tau",
    "position_consistency",
    "summarize",
    "tie_rate",
    "top1_by_label",
    "top1_by_position",
]

_WHERE = {
    "AGGREGATIONS": "._methods",
    "CONSENSUS_RULES": "._ranking",
    "DEFAULT_CONSENSUS": "._ranking",
    "KEMENY_MAX_CANDIDATES": "._methods",
    "METRICS": "._agreement",
    "AgreementError": "._concordance",
    "AnnotatedItem": "._concordance",
    "BiasTally": "._bias",
    "Judgement": "._bias",
    "ScoreAggregator": "._aggregate",
    "aggregate_scores": "._aggregate",
    "chance_levels": "._agreement",
    "concordance": "._concordance",
    "consensus_ranks": "._ranking",
    "flip_rate": "._bias",
    "has_ties": "._ranking",
    "holm": "._paired",
    "human_ceiling": "._ceiling",
    "is_competition_ranking": "._ranking",
    "item_ceiling": "._ceiling",
    "item_metrics": "._agreement",
    "krippendorff_alpha": "._concordance",
    "n_groups": "._agreement",
    "one_blas_thread": "._threads",
    "paired_compare": "._paired",
    "pairwise_tau": "._concordance",
    "position_consistency": "._bias",
    "summarize": "._agreement",
    "tie_rate": "._bias",
    "top1_by_label": "._bias",
    "top1_by_position": "._bias",
}

if TYPE_CHECKING:
    from dialbgm.metrics._aggregate import ScoreAggregator, aggregate_scores
    from dialbgm.metrics._agreement import METRICS, chance_levels, item_metrics, n_groups, summarize
    from dialbgm.metrics._bias import (
        BiasTally,
        Judgement,
        flip_rate,
        position_consistency,
        tie_rate,
        top1_by_label,
        top1_by_position,
    )
    from dialbgm.metrics._ceiling import human_ceiling, item_ceiling
    from dialbgm.metrics._concordance import (
        AgreementError,
        AnnotatedItem,
        concordance,
        krippendorff_alpha,
        pairwise_tau,
    )
    from dialbgm.metrics._methods import AGGREGATIONS, KEMENY_MAX_CANDIDATES
    from dialbgm.metrics._paired import holm, paired_compare
    from dialbgm.metrics._ranking import (
        CONSENSUS_RULES,
        DEFAULT_CONSENSUS,
        consensus_ranks,
        has_ties,
        is_competition_ranking,
    )
    from dialbgm.metrics._threads import one_blas_thread

__getattr__ = exports(__name__, _WHERE)
