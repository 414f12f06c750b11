"""Package discovery (metadata and dependencies are in setup.cfg).

The source tree follows the dependency boundary: ``edgevlm/`` (core, runtime, training, apps) and two top-level
folders installed under it, ``export/`` as ``edgevlm.export`` and ``benchmarks/`` as ``edgevlm.benchmarks``.
Every package below them is found here, so a new subpackage cannot be left out of the wheel by a hand-written
list. ``experiments/`` and ``tests/`` are never installed.
"""

from setuptools import find_packages, setup

MAPPED = {"edgevlm.export": "export", "edgevlm.benchmarks": "benchmarks"}


def packages() -> list[str]:
    found = find_packages(include=["edgevlm", "edgevlm.*"])
    for name, folder in MAPPED.items():
        found += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
    return sorted(found)


setup(packages=packages(), package_dir=MAPPED)
