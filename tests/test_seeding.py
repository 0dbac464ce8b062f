"""Seed domains: one list, no number used twice, plug-ins kept apart from the harness's own."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from harness import HarnessError
from harness.seeding import PLUGIN_DOMAINS, Domain, claim_domain, rng_for

ROOT = Path(__file__).resolve().parents[1]


def test_no_module_defines_a_domain_number_of_its_own() -> None:
    """A `*_DOMAIN = <int literal>` outside harness/seeding.py could collide unseen."""
    found = []
    for path in [*ROOT.glob("harness/**/*.py"), *ROOT.glob("strategies/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and any(isinstance(t, ast.Name) and t.id.endswith("_DOMAIN") for t in node.targets)
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_domains_are_distinct_and_below_the_plugin_range() -> None:
    values = [d.value for d in Domain]
    assert len(set(values)) == len(values) and max(values) <= PLUGIN_DOMAINS


def test_a_domain_key_draws_the_same_numbers_as_its_plain_int() -> None:
    a = rng_for(7, Domain.SHUFFLE, 3).integers(0, 2**62, 4)
    b = np.random.default_rng(np.random.SeedSequence([7, 4, 3])).integers(0, 2**62, 4)
    assert a.tolist() == b.tolist()


def test_plugins_claim_free_numbers_above_the_harness_range() -> None:
    assert claim_domain(PLUGIN_DOMAINS + 17, "plugin a") == PLUGIN_DOMAINS + 17
    assert claim_domain(PLUGIN_DOMAINS + 17, "plugin a") == PLUGIN_DOMAINS + 17  # idempotent
    with pytest.raises(HarnessError, match="already claimed by plugin a"):
        claim_domain(PLUGIN_DOMAINS + 17, "plugin b")
    with pytest.raises(HarnessError, match="plug-in domains are numbers above"):
        claim_domain(int(Domain.SHUFFLE), "plugin c")
