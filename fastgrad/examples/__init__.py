"""Worked examples that ship with fastgrad (run them through the `fastgrad` command)."""
