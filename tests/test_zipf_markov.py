"""The calibration source: its exact entropy rate against brute force, and its text."""

import itertools
import math

import numpy as np
import pytest

from workflow.zipf_markov import SourceSettingsError, ZipfMarkov, read_zipf_markov, settings_of

SMALL = {"words": 4, "successors": 2, "zipf_exponent": 1.0, "successor_exponent": 1.0, "context_weight": 0.6}


def small_chain(**changes) -> ZipfMarkov:
    return ZipfMarkov(settings_of({"name": "small", "settings": {**SMALL, "words_per_document": 6, **changes}}))


def block_entropy(chain: ZipfMarkov, n: int) -> float:
    """H(X_1..X_n) in nats by enumerating every sequence of n words, the first drawn from π."""
    pi, P = chain.stationary(), chain.transitions
    total = 0.0
    for words in itertools.product(range(len(pi)), repeat=n):
        p = pi[words[0]] * np.prod([P[a, b] for a, b in zip(words, words[1:])])
        total -= p * math.log(p)
    return total


def test_entropy_rate_equals_the_brute_force_block_entropy_increment():
    """For a stationary chain, H(X_1..X_n) - H(X_1..X_{n-1}) is the entropy rate, and H(X_1) is H(π):
    enumerated over all 4^n sequences, they must equal the closed forms."""
    chain = small_chain()
    entropy = chain.entropy()
    h = {n: block_entropy(chain, n) for n in (1, 4, 5)}
    assert h[1] == pytest.approx(entropy["first_word_nats"], rel=1e-12)
    assert h[5] - h[4] == pytest.approx(entropy["nats_per_word"], rel=1e-10)
    assert h[5] == pytest.approx(entropy["first_word_nats"] + 4 * entropy["nats_per_word"], rel=1e-10)
    # Per byte: every word carries its letters and one space, averaged under π.
    bytes_per_word = float(chain.stationary() @ np.array([len(w) + 1 for w in chain.words]))
    assert entropy["bits_per_byte"] == pytest.approx(entropy["nats_per_word"] / math.log(2) / bytes_per_word)


def test_sampled_text_has_the_stated_entropy_and_spells_its_words_back():
    """A long sample's -log2 p per byte, under the chain, converges to the computed rate (the first
    word of each document, drawn from π, is the documented difference); the text splits back into
    the same words."""
    chain = ZipfMarkov(settings_of({"name": "x", "settings": {"words": 300, "words_per_document": 400, "seed": 3}}))
    words = chain.sample(400, np.random.default_rng(0))
    texts = chain.texts(words)
    assert [t.split(" ") for t in texts[:5]] == [[chain.words[i] for i in row] for row in words[:5]]
    bits = -chain.log_likelihood(words) / math.log(2)
    per_byte = bits / sum(len(t) for t in texts)
    entropy = chain.entropy()
    assert per_byte == pytest.approx(entropy["document_bits_per_byte"], rel=0.01)
    assert abs(per_byte - entropy["bits_per_byte"]) < 0.02 * entropy["bits_per_byte"]


def test_the_source_is_determined_by_its_seed():
    first, info = read_zipf_markov({"name": "c", "settings": {"words": 50, "documents": 3, "seed": 7}})
    again, _ = read_zipf_markov({"name": "c", "settings": {"words": 50, "documents": 3, "seed": 7}})
    other, _ = read_zipf_markov({"name": "c", "settings": {"words": 50, "documents": 3, "seed": 8}})
    a, b, c = next(first), next(again), next(other)
    assert a == b and a[1] != c[1]
    assert info["entropy"]["bits_per_byte"] > 0 and info["settings"]["seed"] == 7


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"words": 1}, r"settings.words is 1, outside \[2, 5000\]"),
        ({"successors": 9, "words": 5}, r"settings.successors \(9\) exceeds settings.words \(5\)"),
        ({"context_weight": "high"}, r"settings.context_weight is 'high', not a number"),
        ({"docs": 3}, r"unknown setting\(s\) docs"),
    ],
)
def test_bad_settings_are_named(settings, message):
    with pytest.raises(SourceSettingsError, match=message):
        settings_of({"name": "c", "settings": settings})
