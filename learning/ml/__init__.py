"""Machine-learning code of the learning app. Everything here may import torch and transformers,
so only workers, the management commands and the benchmark import it; the web process never does
(tests/learning/test_imports.py holds that)."""
