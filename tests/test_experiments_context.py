"""experiments/context: the context benchmark's parts that need no peer: engine specs and the busy-machine load."""

from __future__ import annotations

import time

import psutil
import pytest

from edgevlm.core.errors import ConfigError
from experiments.context.context import busy, parse_engine

pytestmark = pytest.mark.experiments  # opt-in: make test-experiments


def test_busy_keeps_n_processes_computing_and_stops_them():
    me = psutil.Process()
    with busy(2):
        kids = me.children()
        assert len(kids) == 2
        time.sleep(0.5)
        assert all(k.cpu_times().user > 0.02 for k in kids)  # computing, not sleeping (even on a loaded machine)
    assert not [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]


def test_engine_specs_parse_or_fail_in_one_line():
    assert parse_engine("edgevlm:int4:/b:nlg") == ("edgevlm", "int4", "/b", "nlg")
    assert parse_engine("llamacpp:Q4_0/passive:/m.gguf") == ("llamacpp", "Q4_0/passive", "/m.gguf", None)
    with pytest.raises(ConfigError, match="expected KIND:FMT:PATH"):
        parse_engine("edgevlm:int4")
