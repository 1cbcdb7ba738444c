"""orch-mcp's benchmark suite: every figure a ratio against a floor measured in the same run (`python -m bench`)."""
