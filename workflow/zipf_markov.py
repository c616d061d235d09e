"""A synthetic calibration corpus whose entropy rate is known exactly (``builtin: zipf_markov``).

On real text nobody knows the irreducible loss, so nobody can tell whether a fitted E is biased.
This source is a word-level Markov chain written as text, rich enough for power-law learning and
simple enough that its entropy rate is computed, not estimated.

The chain (all of it drawn from ``seed``):

- W words, distinct random lower-case spellings of 2 to 8 letters, each followed by one space, so
  that the text and the word sequence determine each other;
- a Zipf unigram u_i ∝ (i + 1)^-s over the words (``zipf_exponent`` s);
- for each word, K successors drawn from u without replacement, ranked, with weights
  ∝ (j + 1)^-t (``successor_exponent`` t): a context-specific Zipf law S_w;
- P(next | w) = λ S_w + (1 - λ) u (``context_weight`` λ).

Heavy tails in both the words and their contexts are what give power-law learning curves: a model
learns the frequent transitions first and the rare ones only with more parameters and data.

Entropy rate (docs/calibration.md): with π the stationary distribution of P,
H = Σ_w π_w H(P(·|w)) nats per word, and since every word carries its own bytes plus one space,
the rate per byte is H / ln 2 / Σ_v π_v (len(v) + 1) bits. Each document starts from a word drawn
from π (so the stream is stationary) and holds ``words_per_document`` words. What the rate leaves
out: the first word of each document (drawn from π, entropy H(π) rather than H), and the
end-of-document token the dataset stage appends; both are recorded so the bias they cause can be
stated.
"""

from __future__ import annotations

import math
import string

import numpy as np

SETTINGS = {  # name: (default, minimum, maximum)
    "words": (2000, 2, 5000),  # the transition matrix is dense: W^2 numbers
    "successors": (8, 1, 1000),
    "zipf_exponent": (1.0, 0.0, 4.0),
    "successor_exponent": (1.5, 0.0, 8.0),
    "context_weight": (0.7, 0.0, 1.0),
    "documents": (20_000, 1, 10_000_000),
    "words_per_document": (200, 2, 100_000),
    "seed": (0, 0, 2**32 - 1),
}
INTEGER_SETTINGS = ("words", "successors", "documents", "words_per_document", "seed")
BATCH_DOCUMENTS = 4096


class SourceSettingsError(ValueError):
    """A setting of the source that cannot be used; the message names it."""


def settings_of(source: dict) -> dict:
    """The source's settings with defaults filled in, checked against their ranges."""
    given = dict(source.get("settings") or {})
    unknown = sorted(set(given) - set(SETTINGS))
    if unknown:
        raise SourceSettingsError(
            f"source {source['name']!r}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(SETTINGS)})"
        )
    out = {}
    for name, (default, low, high) in SETTINGS.items():
        value = given.get(name, default)
        integer = name in INTEGER_SETTINGS
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
            kind = "an integer" if integer else "a number"
            raise SourceSettingsError(f"source {source['name']!r}: settings.{name} is {value!r}, not {kind}")
        if not low <= value <= high:
            raise SourceSettingsError(f"source {source['name']!r}: settings.{name} is {value}, outside [{low}, {high}]")
        out[name] = int(value) if integer else float(value)
    if out["successors"] > out["words"]:
        raise SourceSettingsError(
            f"source {source['name']!r}: settings.successors ({out['successors']}) exceeds settings.words "
            f"({out['words']})"
        )
    return out


class ZipfMarkov:
    """The chain of a set of settings: its words, its transition matrix and exact entropies."""

    def __init__(self, settings: dict):
        self.settings = settings
        rng = np.random.default_rng(settings["seed"])
        W, K = settings["words"], settings["successors"]
        self.words = spellings(W, rng)
        self.unigram = zipf(W, settings["zipf_exponent"])
        self.successor_weights = zipf(K, settings["successor_exponent"])
        # Each word's K successors, drawn from the unigram without replacement (Gumbel top-k).
        keys = np.log(self.unigram)[None, :] + rng.gumbel(size=(W, W))
        self.successors = np.argsort(-keys, axis=1)[:, :K]
        lam = settings["context_weight"]
        self.transitions = np.tile((1 - lam) * self.unigram, (W, 1))
        np.add.at(self.transitions, (np.arange(W)[:, None], self.successors), lam * self.successor_weights[None, :])
        self.bytes_per_word = np.array([len(w) + 1 for w in self.words], dtype=float)  # the word and one space

    def stationary(self, tolerance: float = 1e-14, max_iterations: int = 100_000) -> np.ndarray:
        """π with π P = π, by power iteration (P has every entry positive when λ < 1: it converges)."""
        pi = self.unigram.copy()
        for _ in range(max_iterations):
            nxt = pi @ self.transitions
            nxt /= nxt.sum()
            if np.abs(nxt - pi).sum() < tolerance:
                return nxt
            pi = nxt
        raise RuntimeError("the stationary distribution did not converge")

    def entropy(self) -> dict:
        """The exact entropy rate and what it leaves out, in nats and bits."""
        pi = self.stationary()
        P = self.transitions
        with np.errstate(divide="ignore", invalid="ignore"):
            row_entropy = -np.sum(np.where(P > 0, P * np.log(P), 0.0), axis=1)
        nats_per_word = float(pi @ row_entropy)
        bytes_per_word = float(pi @ self.bytes_per_word)
        first_word = float(-np.sum(pi[pi > 0] * np.log(pi[pi > 0])))
        n = self.settings["words_per_document"]
        # A document of n words: n - 1 spaces between them, no trailing one.
        document_bytes = n * bytes_per_word - 1
        document_nats = first_word + (n - 1) * nats_per_word
        return {
            "nats_per_word": nats_per_word,
            "bytes_per_word": bytes_per_word,
            "bits_per_byte": nats_per_word / math.log(2) / bytes_per_word,
            "first_word_nats": first_word,
            "document_bits_per_byte": document_nats / math.log(2) / document_bytes,
            "method": "stationary distribution by power iteration; sum_w pi_w H(P(.|w)) / E_pi[bytes per word]",
        }

    def sample(self, documents: int, rng: np.random.Generator) -> np.ndarray:
        """Word indices, one row per document, each starting from π (vectorised across documents)."""
        n = self.settings["words_per_document"]
        lam = self.settings["context_weight"]
        unigram_cdf, successor_cdf = np.cumsum(self.unigram), np.cumsum(self.successor_weights)
        pi_cdf = np.cumsum(self.stationary())
        out = np.empty((documents, n), dtype=np.int64)
        out[:, 0] = draw(pi_cdf, rng.random(documents))
        for i in range(1, n):
            context = rng.random(documents) < lam
            from_successors = self.successors[out[:, i - 1], draw(successor_cdf, rng.random(documents))]
            out[:, i] = np.where(context, from_successors, draw(unigram_cdf, rng.random(documents)))
        return out

    def log_likelihood(self, words: np.ndarray) -> float:
        """Natural log of the probability of rows of word indices under the chain (start from π)."""
        pi = self.stationary()
        first = np.log(pi[words[:, 0]]).sum()
        return float(first + np.log(self.transitions[words[:, :-1], words[:, 1:]]).sum())

    def texts(self, words: np.ndarray) -> list[str]:
        spelled = np.array(self.words, dtype=object)[words]
        return [" ".join(row) for row in spelled]


def zipf(n: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=float) ** -exponent
    return weights / weights.sum()


def draw(cdf: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: the first index whose cumulative weight exceeds each uniform draw."""
    return np.minimum(np.searchsorted(cdf, uniform * cdf[-1], side="right"), len(cdf) - 1)


def spellings(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` distinct lower-case words of 2 to 8 letters; shorter ones first (Zipf: frequent words
    are short)."""
    letters = np.array(list(string.ascii_lowercase))
    seen: dict[str, None] = {}
    while len(seen) < count:
        length = int(rng.integers(2, 9))
        seen.setdefault("".join(rng.choice(letters, length)), None)
    return sorted(seen, key=len)


def read_zipf_markov(source: dict):
    """The builtin reader: batches of documents (name, text) and the source's manifest info, which
    records the settings and the exact entropy."""
    settings = settings_of(source)
    chain = ZipfMarkov(settings)
    rng = np.random.default_rng([settings["seed"], 1])
    info = {"kind": "builtin:zipf_markov", "settings": settings, "entropy": chain.entropy()}

    def batches():
        for start in range(0, settings["documents"], BATCH_DOCUMENTS):
            count = min(BATCH_DOCUMENTS, settings["documents"] - start)
            texts = chain.texts(chain.sample(count, rng))
            yield [f"{source['name']}-{start + i:08d}" for i in range(count)], texts

    return batches(), info
