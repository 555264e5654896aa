"""Test support for users' suites: Hypothesis strategies and reusable test machinery."""
