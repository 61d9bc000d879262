"""Stage 6, report: retraining, evaluation and the robustness report with statistics."""
