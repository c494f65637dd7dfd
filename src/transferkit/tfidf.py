"""The classical text baseline: TF-IDF of word 1-2-grams and character 3-5-grams, then
multinomial logistic regression (scikit-learn), C picked on the validation split.

Saved without pickle: the vocabularies in ``tfidf.json`` (terms in column order) and the
numbers (idf, coefficients) in ``model.safetensors``; loading rebuilds the same transform
with a fixed-vocabulary CountVectorizer, so nothing from the file is executed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import io as tkio

# Each block is L2-normalised on its own; sublinear tf (1 + log count), smoothed idf.
VECTORIZERS = {
    "word": dict(analyzer="word", ngram_range=(1, 2), min_df=2, lowercase=True, token_pattern=r"(?u)\b\w+\b"),
    "char": dict(analyzer="char_wb", ngram_range=(3, 5), min_df=2, lowercase=True),
}
C_GRID = (1.0, 10.0, 100.0)  # inverse L2 strength tried; L2-normalised tf-idf usually wants C ≥ 1
VOCAB_FILE = "tfidf.json"


class TfidfModel:
    """texts -> class probabilities. `fit` returns self; learned attributes end in `_`."""

    spec = {"kind": "tfidf"}

    def __init__(self, n_classes: int, seed: int = 0, C: float | None = None, class_weight: str = "none"):
        self.n_classes, self.seed, self.C, self.class_weight = n_classes, seed, C, class_weight
        self.temperature_ = 1.0  # set_temperature: calibrated on validation after fitting

    # ---- fitting
    def fit(self, train_texts, ytr, val_texts, yva) -> "TfidfModel":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss

        import scipy.sparse as sp

        self.blocks_, parts = {}, []
        for name, params in VECTORIZERS.items():
            v = TfidfVectorizer(sublinear_tf=True, dtype=np.float32, **params)
            parts.append(v.fit_transform(train_texts))  # the same numbers `transform` gives
            terms = [None] * len(v.vocabulary_)
            for t, j in v.vocabulary_.items():
                terms[j] = t
            self.blocks_[name] = {"params": params, "terms": terms, "idf": v.idf_.astype(np.float32)}
        Xtr, Xva = sp.hstack(parts).tocsr(), self.transform(val_texts)
        grid = [self.C] if self.C is not None else list(C_GRID)
        scores, best = {}, None
        for c in grid:
            clf = LogisticRegression(C=c, max_iter=2000, random_state=self.seed, class_weight="balanced" if self.class_weight == "balanced" else None).fit(Xtr, ytr)
            if len(yva) and len(grid) > 1:
                p = np.clip(self._full_proba(clf, Xva), 1e-7, 1.0)
                p /= p.sum(1, keepdims=True)
                # accuracy first; log-loss breaks ties (large C is confident, not always better)
                scores[c] = (float((p.argmax(1) == np.asarray(yva)).mean()), -float(log_loss(yva, p, labels=list(range(self.n_classes)))))
            else:
                scores[c] = (0.0, 0.0)
            if best is None or scores[c] > scores[best[0]]:
                best = (c, clf)
        self.C_, clf = best
        self.val_scores_ = {str(c): {"accuracy": a, "log_loss": -nl} for c, (a, nl) in scores.items()}
        coef = np.zeros((self.n_classes, Xtr.shape[1]), dtype=np.float32)
        icpt = np.full(self.n_classes, -1e4, dtype=np.float32)  # classes absent from train never win
        cc, ci = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2:  # sklearn's binary case: one row for the positive class
            cc, ci = np.vstack([-cc / 2, cc / 2]), np.array([-ci[0] / 2, ci[0] / 2])
        coef[clf.classes_], icpt[clf.classes_] = cc, ci
        self.coef_, self.intercept_ = coef, icpt
        return self

    def _full_proba(self, clf, X) -> np.ndarray:
        p = np.zeros((X.shape[0], self.n_classes))
        p[:, clf.classes_] = clf.predict_proba(X)
        return p

    # ---- inference
    def transform(self, texts):
        """Sparse (N, F) features: each block's sublinear tf × idf, L2-normalised, side by side."""
        import scipy.sparse as sp
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        parts = []
        for b in self.blocks_.values():
            p = dict(b["params"], ngram_range=tuple(b["params"]["ngram_range"]))
            X = CountVectorizer(vocabulary=b["terms"], dtype=np.float32, **p).transform(texts).tocsr()
            np.log(X.data, out=X.data)
            X.data += 1.0
            parts.append(normalize(X.multiply(b["idf"][None, :]).tocsr(), norm="l2", copy=False))
        return sp.hstack(parts).tocsr()

    def set_temperature(self, t: float) -> None:
        self.temperature_ = float(t)

    def logits(self, texts) -> np.ndarray:
        """Class scores before the softmax (and before the temperature), float64 (N, C)."""
        return np.asarray(self.transform(texts) @ self.coef_.T, dtype=np.float64) + self.intercept_

    def predict_proba(self, texts) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.n_classes), dtype=np.float32)
        z = self.logits(texts) / self.temperature_
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)  # float64: rows sum to 1 to the precision metrics check

    def num_params(self) -> int:
        return int(self.coef_.size + self.intercept_.size)

    def info(self) -> dict:
        return {"head": "tfidf-logreg", "C": self.C_, "val_scores_by_C": self.val_scores_, "class_weight": self.class_weight, "features": {k: len(b["terms"]) for k, b in self.blocks_.items()}}

    # ---- files
    def save(self, run_dir: Path, model_file: str) -> None:
        from safetensors.numpy import save_file

        vocab = {name: {"params": b["params"], "terms": b["terms"]} for name, b in self.blocks_.items()}
        tkio.write_text(Path(run_dir) / VOCAB_FILE, json.dumps({"n_classes": self.n_classes, "C": self.C_, "temperature": self.temperature_, "blocks": vocab}))
        arrays = {f"{name}.idf": b["idf"] for name, b in self.blocks_.items()}
        arrays.update(coef=self.coef_, intercept=self.intercept_)
        with tkio.atomic_path(Path(run_dir) / model_file) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata={"head": "tfidf-logreg"})

    @classmethod
    def load(cls, run_dir: Path, model_file: str) -> "TfidfModel":
        from safetensors.numpy import load_file

        meta = tkio.read_json(Path(run_dir) / VOCAB_FILE)
        arrays = load_file(str(Path(run_dir) / model_file))
        m = cls(int(meta["n_classes"]), C=meta["C"])
        m.C_ = meta["C"]
        m.temperature_ = float(meta.get("temperature", 1.0))
        m.blocks_ = {name: {"params": b["params"], "terms": b["terms"], "idf": arrays[f"{name}.idf"]} for name, b in meta["blocks"].items()}
        m.coef_, m.intercept_ = arrays["coef"], arrays["intercept"]
        return m
