"""What a fitted study is: the numbers a reader needs before "E = 1.9 nats/token" means anything.

Read from the table of fitted runs (sizes, token and compute ranges, schedule, learning rate, batch,
seeds, context) and, in the pipeline, from the stages' manifests in results/data/ (corpus, tokenizer,
validation set), so that a reviewer's regeneration from results/ gives the same card. A column or
manifest that is absent (an external table) leaves its entry out rather than guessing it.
"""

from __future__ import annotations

import polars as pl

# Columns whose distinct values the card lists (few per study), and the card's name for each.
LISTED = {
    "family": "families",
    "schedule": "schedules",
    "seq_len": "context",
    "vocab_size": "vocab_size",
    "seed": "seeds",
    "device": "devices",
    "compute_budget": "compute_budgets",
}
# Columns the card gives as a range (a tuned or scaled study has one value per size).
RANGED = {"params": "params", "tokens": "tokens", "flops": "flops", "lr": "lr", "batch_tokens": "batch_tokens"}


def study_card(table: pl.DataFrame, manifests: dict[str, dict] | None = None) -> dict:
    """The card of the runs in ``table`` (the fitted ones); ``manifests``: the corpus, tokenizer and
    dataset manifests by name, where the pipeline has them."""
    card: dict = {"runs": table.height}
    if "training_run" in table.columns:
        card["training_runs"] = table["training_run"].n_unique()
    card["sizes"] = table["params"].n_unique()
    for column, name in LISTED.items():
        if column in table.columns:
            values = table[column].drop_nulls().unique().sort().to_list()
            if values:
                card[name] = values
    for column, name in RANGED.items():
        if column in table.columns and table[column].drop_nulls().len():
            card[name] = {"min": float(table[column].min()), "max": float(table[column].max())}
    if "tuned" in table.columns:
        # The collect stage writes which settings the tune stage chose ("lr (sweep)"), empty if none.
        tuned = table["tuned"].cast(pl.String).fill_null("").unique().to_list()
        card["tuned"] = sorted(t for t in tuned if t)
    manifests = manifests or {}
    corpus = manifests.get("corpus")
    if corpus:
        card["corpus"] = {
            "sources": [s.get("name") or s.get("kind") for s in corpus.get("sources") or []],
            "bytes": corpus.get("bytes"),
            "documents": corpus.get("documents"),
        }
    tokenizer = manifests.get("tokenizer")
    if tokenizer:
        card["tokenizer"] = {k: tokenizer.get(k) for k in ("model_type", "vocab_size", "source") if k in tokenizer}
    dataset = manifests.get("dataset")
    if dataset:
        splits = dataset.get("splits") or {}
        tokens = {name: sum(s.get("tokens", 0) for s in split.get("shards") or []) for name, split in splits.items()}
        card["dataset"] = {f"{name}_tokens": n for name, n in tokens.items() if n}
    return card
