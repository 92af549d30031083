"""Which weights a benchmark measured: a stamp in every results file the README's tables come from.

The README's tables are generated from ``docs/bench/*.json`` (``scripts/readme_tables.py``). When
the default weights change, a table measured with the old ones must not stand next to the new ones:
each benchmark writes ``"weights": {model: hash16}`` into its summary, and the table generator's
check (run by the test suite) fails while any table's stamp names other ``default`` weights than
the ones shipped.
"""

from __future__ import annotations

from collections.abc import Iterable

from codec.zoo.registry import Registry, default_registry

STAMP_KEY = "weights"


def weights_stamp(models: Iterable[str], registry: Registry | None = None) -> dict[str, str]:
    """``{model name: hex hash of its weights}`` for the models a benchmark ran."""
    reg = registry or default_registry()
    return {name: reg.get(name).hash.hex() for name in models}


def default_hash(registry: Registry | None = None) -> str:
    """The hex hash of the shipped ``default`` weights (what bitstreams name as ``default@<hash>``)."""
    return weights_stamp(["default"], registry)["default"]
