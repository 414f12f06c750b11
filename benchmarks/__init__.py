"""edgevlm benchmarks (installed as ``edgevlm.benchmarks``): footprint, latency (with the peers when installed),
quality and serving suites.

Run them with ``edgevlm bench [--suite footprint|latency|quality|serving|all] [--quick]``
or one at a time with ``python -m edgevlm.benchmarks.<suite>``; results go to
``benchmarks/results/<suite>/`` (JSON, a markdown table, PNG plots), and ``edgevlm bench --summary``
turns them into docs/results.md. One-off investigations live in ``experiments/`` (not installed).
"""
