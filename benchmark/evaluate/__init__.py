"""Frozen-backbone evaluations of a trained run (`3die evaluate`): linear-probe classification, rotation
and colour prediction from pairs of views, and the predictor's prediction error and retrieval scores.

`evaluate_run(run_dir)` writes RUN/results.json; the metric functions (`benchmark.evaluate.metrics`),
probes (`.probes`) and retrieval (`.retrieval`) work on plain feature arrays and are usable on their own.
"""

from benchmark.evaluate.features import FEATURES_DIR, SplitFeatures, features_key, split_features
from benchmark.evaluate.metrics import (
    HIT_AT,
    expected_random_mrr,
    mean_class_accuracy,
    quaternion_angle_deg,
    r2_columns,
    r2_pooled,
    ranking_metrics,
    top_k_accuracy,
)
from benchmark.evaluate.probes import (
    ProbeSettings,
    classification_probe,
    colour_probe,
    draw_pairs,
    rotation_probe,
)
from benchmark.evaluate.retrieval import (
    TIE_TOLERANCE,
    nearest_view_rotation_error,
    predict_views,
    prediction_error,
    retrieval_ranks,
    retrieval_ranks_loop,
    retrieval_scores,
    view_zero_queries,
)
from benchmark.evaluate.run import (
    PAPER_PROBE_EPOCHS,
    PROBE_TASKS,
    RESULTS_FORMAT,
    RESULTS_NAME,
    TASKS,
    EvaluationError,
    EvaluationSettings,
    code_version,
    evaluate_run,
    parse_epochs,
    parse_tasks,
)

__all__ = [
    "FEATURES_DIR",
    "HIT_AT",
    "PAPER_PROBE_EPOCHS",
    "PROBE_TASKS",
    "RESULTS_FORMAT",
    "RESULTS_NAME",
    "TASKS",
    "TIE_TOLERANCE",
    "EvaluationError",
    "EvaluationSettings",
    "ProbeSettings",
    "SplitFeatures",
    "classification_probe",
    "code_version",
    "colour_probe",
    "draw_pairs",
    "evaluate_run",
    "expected_random_mrr",
    "features_key",
    "mean_class_accuracy",
    "nearest_view_rotation_error",
    "parse_epochs",
    "parse_tasks",
    "predict_views",
    "prediction_error",
    "quaternion_angle_deg",
    "r2_columns",
    "r2_pooled",
    "ranking_metrics",
    "retrieval_ranks",
    "retrieval_ranks_loop",
    "retrieval_scores",
    "rotation_probe",
    "split_features",
    "top_k_accuracy",
    "view_zero_queries",
]
