"""A classifier learned from the user's own labels: the tier after rules and before the model.

A correction teaches a `key` rule for exactly that normalised description; the classifier
generalises it to descriptions that are alike but not identical ("QZX CRAFTS LEEDS" corrected →
"QZX CRAFTS ONLINE" too), as beancount's smart_importer does: a linear model (scikit-learn
logistic regression) over character and word n-grams of the normalised description, trained on
overrides (weighted most), rule labels, and confident model answers (which teach it what the
user left alone). Deterministic (no random state), retrained by each enrich run when the labels
changed, and it answers only above `MIN_CONFIDENCE`; never over an override or a rule (the
service asks it after them).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import Engine, select

from bank_pipeline.categories import Category
from bank_pipeline.db.schema import category_overrides, enrichments, transactions
from bank_pipeline.enrich.normalise import normalise_description
from bank_pipeline.enrich.policy import enforce_direction
from bank_pipeline.enrich.types import Enrichment, TxnInput

log = logging.getLogger(__name__)
MIN_CONFIDENCE = 0.6  # below this the next tiers answer
MIN_OVERRIDES = 1  # without a correction there is nothing the other tiers do not already know
MIN_EXAMPLES = 20
CONFIDENT_MODEL = 0.8  # model answers at least this confident are taught as the user's labels
WEIGHTS = {"override": 5.0, "rule": 2.0, "model": 1.0}
_TRAINED: dict[str, UserClassifier] = {}


def _features(normalised: str, direction: str) -> str:
    return f"{direction} {normalised}"


@dataclass(frozen=True)
class Example:
    text: str
    label: str  # "category/subcategory"
    weight: float


def training_examples(engine: Engine) -> list[Example]:
    """One example per (normalised description, direction): its strongest label."""
    t, e, o = transactions, enrichments, category_overrides
    votes: dict[str, Counter] = defaultdict(Counter)
    best_weight: dict[str, float] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                t.c.description,
                t.c.direction,
                e.c.category,
                e.c.subcategory,
                e.c.source,
                e.c.confidence,
                e.c.flags,
                o.c.transaction_id.label("override_id"),
            )
            .select_from(t.join(e, e.c.transaction_id == t.c.id).outerjoin(o, o.c.transaction_id == t.c.id))
            .where(
                (o.c.transaction_id.is_not(None))
                | (e.c.source == "rule")
                | ((e.c.source == "model") & (e.c.confidence >= CONFIDENT_MODEL))
            )
        )
        for r in rows:
            if r.flags and "provisional" in r.flags or r.category in ("unknown", None):
                continue
            kind = "override" if r.override_id is not None else r.source
            weight = WEIGHTS.get(kind, 1.0)
            normalised = normalise_description(r.description)
            if not normalised:
                continue
            text = _features(normalised, r.direction)
            votes[text][f"{r.category}/{r.subcategory or ''}"] += weight
            best_weight[text] = max(best_weight.get(text, 0.0), weight)
    return [
        Example(text, counter.most_common(1)[0][0], best_weight[text])
        for text, counter in sorted(votes.items())
    ]


class UserClassifier:
    def __init__(self, examples: list[Example], categories: dict[str, Category], digest: str):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, make_pipeline

        self.categories = categories
        self.name = f"classifier-{digest[:10]}"
        features = FeatureUnion(
            [
                ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)),
                ("words", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"\S+")),
            ]
        )
        self.pipeline = make_pipeline(features, LogisticRegression(C=20.0, max_iter=2000))
        with warnings.catch_warnings():  # few examples per label is the normal case here
            warnings.simplefilter("ignore", UserWarning)
            self.pipeline.fit(
                [x.text for x in examples],
                [x.label for x in examples],
                logisticregression__sample_weight=[x.weight for x in examples],
            )
        self.labels = list(self.pipeline.classes_)

    def predict_many(self, txns: list[TxnInput]) -> dict[int, Enrichment]:
        """Confident answers only (≥ MIN_CONFIDENCE, category allowed for the direction)."""
        todo = [(t, normalise_description(t.description)) for t in txns]
        todo = [(t, n) for t, n in todo if n]
        if not todo:
            return {}
        probabilities = self.pipeline.predict_proba([_features(n, t.direction) for t, n in todo])
        out: dict[int, Enrichment] = {}
        for (txn, _), row in zip(todo, probabilities, strict=True):
            best = int(row.argmax())
            confidence = float(row[best])
            category, _, sub = self.labels[best].partition("/")
            known = self.categories.get(category)
            if confidence < MIN_CONFIDENCE or known is None or txn.direction not in known.directions:
                continue
            answer = Enrichment(
                category=category,
                subcategory=sub or None,
                confidence=round(confidence, 3),
                source="classifier",
                provider="local",
                model=self.name,
            )
            out[txn.id] = enforce_direction(answer, txn.direction, self.categories)
        return out

    def predict(self, txn: TxnInput) -> Enrichment | None:
        return self.predict_many([txn]).get(txn.id)


def train_for(engine: Engine, categories: dict[str, Category]) -> UserClassifier | None:
    """The classifier for the user's current labels: retrained when they changed, else reused."""
    examples = training_examples(engine)
    overrides = sum(x.weight == WEIGHTS["override"] for x in examples)
    if overrides < MIN_OVERRIDES or len(examples) < MIN_EXAMPLES or len({x.label for x in examples}) < 2:
        return None
    digest = hashlib.sha256(
        "\n".join(f"{x.text}\t{x.label}\t{x.weight}" for x in examples).encode()
    ).hexdigest()
    key = f"{digest}:{id(categories)}"
    found = _TRAINED.get(key)
    if found is None:
        found = UserClassifier(examples, categories, digest)
        _TRAINED.clear()  # one user's labels at a time: keep memory flat
        _TRAINED[key] = found
        log.info("trained the user's classifier on %d descriptions (%d corrected)", len(examples), overrides)
    return found
