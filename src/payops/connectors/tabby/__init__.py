"""Tabby (buy now, pay later): capture, refund, void (close) and inquiry over Tabby's payments API."""
