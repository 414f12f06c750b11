"""edgevlm benchmarks (installed as ``edgevlm.benchmarks``): footprint, latency and quality suites.

Run them with ``edgevlm bench [--suite footprint|latency|quality|all] [--quick]``
or one at a time with ``python -m edgevlm.benchmarks.<suite>``; results go to
``benchmarks/results/<suite>/`` (JSON, a markdown table, PNG plots).
"""
