"""Stage 3, label quality: out-of-fold predictions and cleanlab label issues."""
