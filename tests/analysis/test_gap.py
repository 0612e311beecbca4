"""The domain-gap measurement: NMI of k-means over embeddings, as CLIP-ViP computes it."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.encoders import TfidfEncoder, embed
from analysis.gap import GapConfig, domain_gap_nmi, draw_order, measure, needed_indices, plan_pairs


@pytest.fixture(scope="module")
def vectors(animals, kitchen):
    """Unit TF-IDF vectors of two corpora that share no word, and halves of one of them."""
    enc = TfidfEncoder(dim=64)
    enc.fit(animals + kitchen)
    return {"animals": embed(enc, animals), "kitchen": embed(enc, kitchen)}


def lookup(vectors):
    return lambda name, idx: vectors[name][idx]


def test_disjoint_vocabularies_give_nmi_near_one(vectors):
    assert domain_gap_nmi(vectors["animals"][:200], vectors["kitchen"][:200], seed=0) > 0.95


def test_two_samples_of_one_corpus_give_nmi_near_zero(vectors):
    rng = np.random.default_rng(0)
    x = vectors["animals"][rng.permutation(400)]
    assert domain_gap_nmi(x[:200], x[200:], seed=0) < 0.05


def test_the_gap_is_symmetric_in_the_pair(vectors):
    sizes = {"animals": 400, "kitchen": 400}
    cfg = GapConfig(samples=150, seeds=(0, 1, 2), n_init=2)
    ab = measure(sizes, lookup(vectors), cfg, references=["kitchen"]).pairs[0]
    ba = measure(sizes, lookup(vectors), cfg, references=["animals"]).pairs[0]
    assert (ab.source, ab.reference) == ("animals", "kitchen")
    assert (ba.source, ba.reference) == ("kitchen", "animals")
    assert ab.nmi == ba.nmi


def test_one_seed_gives_the_same_numbers_every_run(vectors):
    mixed = {
        "a": np.concatenate([vectors["animals"][:300], vectors["kitchen"][:100]]),
        "b": np.concatenate([vectors["animals"][300:], vectors["kitchen"][100:]]),
    }
    sizes = {"a": 400, "b": 400}
    cfg = GapConfig(samples=100, seeds=(7,), n_init=2)
    first = measure(sizes, lookup(mixed), cfg).pairs[0].nmi
    again = measure(sizes, lookup(mixed), cfg).pairs[0].nmi
    other = measure(sizes, lookup(mixed), GapConfig(samples=100, seeds=(8,), n_init=2)).pairs[0].nmi
    assert first == again
    assert first != other  # a fresh draw, not the same sentences again


def test_draws_are_without_replacement_and_per_source():
    order = draw_order(50, seed=3, name="msrvtt")
    assert sorted(order.tolist()) == list(range(50))
    assert not np.array_equal(order, draw_order(50, seed=3, name="coco"))
    used = needed_indices({"big": 1000, "small": 30}, GapConfig(samples=100, seeds=(0, 1)))
    assert len(used["small"]) == 30 and 100 < len(used["big"]) <= 200


def test_a_small_source_gives_a_warning_and_equal_smaller_counts(vectors):
    sizes = {"animals": 400, "kitchen": 40}
    result = measure(sizes, lookup(vectors), GapConfig(samples=100, seeds=(0,), n_init=2))
    assert result.pairs[0].n == 40
    assert any("kitchen: only 40" in w for w in result.warnings)


def test_all_sources_together_use_k_equal_to_the_number_of_sources(vectors, animals):
    three = {**vectors, "animals_too": vectors["animals"][::-1].copy()}
    result = measure(
        {"animals": 400, "kitchen": 400, "animals_too": 400},
        lookup(three),
        GapConfig(samples=100, seeds=(0, 1), n_init=2),
    )
    assert len(result.pairs) == 3  # no --reference: every pair once
    assert result.overall is not None and result.overall.reference == "animals,animals_too,kitchen"
    # kitchen stands apart, the two animal samples do not: 2 of 3 groups separable
    assert 0.4 < result.overall.nmi_mean < 0.8
    assert result.pair("kitchen", "animals").nmi_mean > 0.9
    assert result.pair("animals", "animals_too").nmi_mean < 0.1


def test_table_layout_rows_are_sources_and_columns_references():
    rows, cols, pairs = plan_pairs(["a", "b", "msr", "didemo"], ["msr", "didemo"])
    assert rows == ["a", "b", "msr", "didemo"] and cols == ["msr", "didemo"]
    assert pairs == [
        ("a", "msr"),
        ("a", "didemo"),
        ("b", "msr"),
        ("b", "didemo"),
        ("msr", "didemo"),  # the references against each other too (measured once)
        ("didemo", "msr"),
    ]


def test_an_unknown_reference_is_an_error(vectors):
    with pytest.raises(ValueError, match="coco"):
        measure({"animals": 400, "kitchen": 400}, lookup(vectors), GapConfig(), references=["coco"])


def test_k_of_all_sources_counts_names_even_when_a_name_holds_a_comma(vectors):
    result = measure(
        {"a,b": 400, "kitchen": 400, "c": 400},
        lookup({"a,b": vectors["animals"], "kitchen": vectors["kitchen"], "c": vectors["animals"]}),
        GapConfig(samples=60, seeds=(0,), n_init=1),
    )
    assert result.sources == ["a,b", "c", "kitchen"]  # k = 3, though the joined name has 4 parts
    assert result.overall is not None and result.overall.reference == "a,b,c,kitchen"


def test_a_reference_given_twice_is_one_column():
    rows, cols, pairs = plan_pairs(["a", "b", "msr"], ["msr", "msr"])
    assert rows == ["a", "b"] and cols == ["msr"] and pairs == [("a", "msr"), ("b", "msr")]


def test_every_source_against_every_reference_including_reference_pairs():
    rows, cols, pairs = plan_pairs(["a", "b", "c"], ["a", "b"])
    assert cols == ["a", "b"] and rows == ["c", "a", "b"]
    assert pairs == [("c", "a"), ("c", "b"), ("a", "b"), ("b", "a")]


def test_each_unordered_pair_is_clustered_once_and_fills_both_entries(vectors, monkeypatch):
    import analysis.gap as gap

    calls = []
    real = gap.cluster_nmi

    def counting(groups, seed, n_init=10):
        calls.append(len(groups))
        return real(groups, seed, n_init)

    monkeypatch.setattr(gap, "cluster_nmi", counting)
    vec = {"a": vectors["animals"], "b": vectors["kitchen"], "c": vectors["animals"]}
    result = measure(
        {"a": 400, "b": 400, "c": 400},
        lookup(vec),
        GapConfig(samples=50, seeds=(0, 1), n_init=1),
        references=["a", "b", "c"],
    )
    assert len(result.pairs) == 6  # every source against every other reference, both ways
    assert calls.count(2) == 3 * 2  # 3 unordered pairs x 2 seeds, not 6 x 2
    ab = [p for p in result.pairs if {p.source, p.reference} == {"a", "b"}]
    assert len(ab) == 2 and ab[0].nmi == ab[1].nmi


def test_a_tiny_source_warns_that_it_shrinks_the_all_sources_run(vectors):
    result = measure(
        {"animals": 400, "kitchen": 400, "tiny": 3},
        lookup({**vectors, "tiny": vectors["animals"]}),
        GapConfig(samples=50, seeds=(0,), n_init=1),
    )
    assert result.overall is not None and result.overall.n == 3
    assert any("all-sources run" in w and "n = 3" in w and "tiny" in w for w in result.warnings)
