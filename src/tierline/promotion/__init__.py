"""Promotion: the gate, the champion registry and the hand-off to freqtrade."""
