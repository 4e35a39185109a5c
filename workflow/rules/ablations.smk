# Ablation targets (not built by default): see below.
