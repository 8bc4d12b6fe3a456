"""Long-context memory: InfLLM-style units and Squeezed-Attention cached contexts."""
