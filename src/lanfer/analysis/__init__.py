"""Analysis: figures and HTML reports built from runs and models."""
