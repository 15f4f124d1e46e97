"""The device runner: measures one model on the device it runs on.

Shipped to devices inside `runner.pyz` (built by `toolkit.runner.pack`) together with
`toolkit/errors.py` and `delegates/`. Everything here imports only the standard library, numpy,
`delegates` and `toolkit.errors`, and runs on Python 3.9 (docs/internals.md).
"""
