"""One decoder-graph builder per architecture on a shared base (:mod:`.base`); the registry is :mod:`export.graph`."""
