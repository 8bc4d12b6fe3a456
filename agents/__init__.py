"""Planner, searcher and writer agents and LLM backends (see the agents issue)."""
