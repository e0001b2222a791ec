"""Tabby (buy now, pay later): capture, refund, void (close) and inquiry."""
