"""The site memory's numbers: confirmed series as points in the model's own feature space.

Each confirmed series is one row of float32 features: for every place of
:mod:`SeqClassifierLib.model.ood` (image, meta, fused, header) and every fold
of the ensemble, the vector the fold computed.  Distances are measured as the
shipped model's "unlike training data" check measures them: each fold's
Mahalanobis distance with that place's stored shared precision matrix
(``P = L L^T``, so the distance is a Euclidean one after ``x -> x L``),
averaged over the folds; the units are the ones of the card's OOD thresholds.

The label blend (:meth:`SiteMemory.blend`) uses the ``fused`` place (the
pre-logit vector of each fold):

* neighbours: the :data:`K` nearest confirmed series within ``radius`` =
  :data:`RADIUS_FACTOR` x the fused OOD threshold;
* kernel ``k(d) = (1 - (d / radius)^2)^2`` (1 for the same point, 0 at the radius);
* ``p_knn = sum k_i onehot(y_i) / sum k_i`` and ``w = k(d_nearest)``;
* ``p = (1 - w) p_shipped + w p_knn``.  Nothing within the radius: ``w = 0`` and
  the shipped probabilities are returned untouched (the same array).

The review rule's reference set: a place's "unlike training data" flag is
dropped when the series lies within that place's threshold x
:data:`OOD_FACTOR` of a confirmed series (in the same distance), as it would be
within the threshold of a training class mean.

numpy only; the geometry (Cholesky factors, thresholds) comes from a loaded
classifier through :meth:`Geometry.from_classifier`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from SeqClassifierLib.labels import CLASS_NAMES

#: The feature places, in the order they are laid out in a row (as model.ood.PLACES).
PLACES = ("image", "meta", "fused", "header")
#: Nearest confirmed series that vote.
K = 5
#: Neighbour radius as a multiple of the card's fused OOD threshold.
RADIUS_FACTOR = 1.5
#: The blend weight is the nearest's kernel x min(1, UNSURE_GAIN x (1 - shipped confidence)).
UNSURE_GAIN = 1.0
#: A confirmed series within (place threshold x this) counts as known for that place's flag.
OOD_FACTOR = 1.0


@dataclass
class Geometry:
    """How one model measures distances: per place, each fold's whitening factor and the threshold."""

    #: place -> [F, D, D] float64 Cholesky factors ``L`` of the folds' precision matrices.
    factors: Dict[str, np.ndarray]
    #: place -> the card's OOD threshold (distance units).
    thresholds: Dict[str, float]

    @property
    def places(self) -> List[str]:
        return [p for p in PLACES if p in self.factors]

    def layout(self) -> Dict[str, Tuple[int, int]]:
        """place -> (folds, dim) of the rows this geometry reads."""
        return {p: (int(self.factors[p].shape[0]), int(self.factors[p].shape[1])) for p in self.places}

    @property
    def radius(self) -> Optional[float]:
        t = self.thresholds.get("fused")
        return None if t is None or "fused" not in self.factors else float(t) * RADIUS_FACTOR

    @classmethod
    def from_classifier(cls, classifier: Any) -> Optional["Geometry"]:
        """The geometry of a loaded :class:`~SeqClassifierLib.model.classifier.Classifier`; None
        when its checkpoint holds no OOD statistics (then only confirmed UIDs are used)."""
        model = getattr(classifier, "_model", None)
        ood = getattr(model, "ood", None)
        if ood is None or not ood.per_fold:
            return None
        factors = {}
        for place in ood.places:
            mats = []
            for fold in ood.per_fold:
                p = fold[place]["precision"].detach().cpu().double().numpy()
                p = (p + p.T) / 2
                mats.append(np.linalg.cholesky(p))
            factors[place] = np.stack(mats)
        return cls(factors=factors, thresholds=dict(ood.thresholds))


def row_from_features(captured: Sequence[Mapping[str, Any]], i: int, layout: Mapping[str, Tuple[int, int]]
                      ) -> Optional[np.ndarray]:
    """Sample ``i``'s row (float32) from each fold's captured ``{place: [B, D]}``; None if a place is missing."""
    parts = []
    for place, (folds, dim) in layout.items():
        if len(captured) != folds:
            return None
        for fold in captured:
            t = fold.get(place)
            if t is None:
                return None
            v = t[i].detach().float().cpu().numpy() if hasattr(t, "detach") else np.asarray(t[i], np.float32)
            if v.shape != (dim,):
                return None
            parts.append(v)
    return np.concatenate(parts).astype(np.float32) if parts else None


def row_width(layout: Mapping[str, Tuple[int, int]]) -> int:
    return int(sum(f * d for f, d in layout.values()))


@dataclass
class Neighbours:
    """What the memory says about one series."""

    #: place -> distance to the nearest confirmed series.
    nearest: Dict[str, float] = field(default_factory=dict)
    #: (index, fused distance) of the voting neighbours, nearest first (all within the radius).
    voters: List[Tuple[int, float]] = field(default_factory=list)


class SiteMemory:
    """Confirmed series (labels, who, rows of features) and the distance arithmetic over them."""

    def __init__(self, layout: Mapping[str, Tuple[int, int]]):
        self.layout: Dict[str, Tuple[int, int]] = {p: (int(f), int(d)) for p, (f, d) in layout.items()}
        self.entries: List[Dict[str, Any]] = []
        self.vectors = np.zeros((0, row_width(self.layout)), dtype=np.float32)
        self._index: Dict[str, int] = {}
        self._whitened: Optional[Dict[str, Tuple[np.ndarray, np.ndarray]]] = None
        self._geometry: Optional[Geometry] = None
        self._labels = np.zeros(0, dtype=np.int64)

    # -- contents ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, uid: object) -> bool:
        return uid in self._index

    def entry(self, uid: str) -> Optional[Dict[str, Any]]:
        i = self._index.get(uid)
        return self.entries[i] if i is not None else None

    def label_of(self, uid: str) -> Optional[str]:
        e = self.entry(uid)
        return e["label"] if e is not None else None

    def add(self, entry: Mapping[str, Any], row: np.ndarray) -> None:
        """Add (or replace, same ``series_uid``) one confirmed series."""
        self.add_many([entry], np.asarray(row, dtype=np.float32)[None, :])

    def add_many(self, entries: Sequence[Mapping[str, Any]], rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float32).reshape(len(entries), -1)
        if rows.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"feature rows have {rows.shape[1]} values, the memory {self.vectors.shape[1]}")
        if not np.isfinite(rows).all():
            raise ValueError("feature rows hold non-finite values")
        new_entries, new_rows = [], []
        for e, r in zip(entries, rows):
            e = dict(e)
            if e.get("label") not in CLASS_NAMES:
                raise ValueError(f"series {e.get('series_uid')}: label {e.get('label')!r} is not one of "
                                 f"{', '.join(CLASS_NAMES)}")
            i = self._index.get(e["series_uid"])
            if i is not None and i >= len(self.entries):  # twice in this batch: the last one wins
                new_entries[i - len(self.entries)] = e
                new_rows[i - len(self.entries)] = r
            elif i is not None:
                self.entries[i] = e
                self.vectors[i] = r
            else:
                self._index[e["series_uid"]] = len(self.entries) + len(new_entries)
                new_entries.append(e)
                new_rows.append(r)
        if new_rows:
            self.entries += new_entries
            self.vectors = np.concatenate([self.vectors, np.stack(new_rows)])
        self._whitened = None

    def remove(self, uids: Sequence[str]) -> int:
        drop = {self._index[u] for u in uids if u in self._index}
        if not drop:
            return 0
        keep = [i for i in range(len(self.entries)) if i not in drop]
        self.entries = [self.entries[i] for i in keep]
        self.vectors = self.vectors[keep]
        self._index = {e["series_uid"]: i for i, e in enumerate(self.entries)}
        self._whitened = None
        return len(drop)

    def relabel(self, uid: str, label: str, **info: Any) -> None:
        e = self.entry(uid)
        if e is not None:
            if label not in CLASS_NAMES:
                raise ValueError(f"series {uid}: label {label!r} is not one of {', '.join(CLASS_NAMES)}")
            e["label"] = label
            e.update({k: v for k, v in info.items() if v is not None})
            self._whitened = None  # labels are cached with the whitened rows

    def labels(self) -> np.ndarray:
        return np.array([CLASS_NAMES.index(e["label"]) for e in self.entries], dtype=np.int64)

    # -- geometry ------------------------------------------------------------------------------
    def _place_slices(self) -> Dict[str, slice]:
        out, start = {}, 0
        for place, (f, d) in self.layout.items():
            out[place] = slice(start, start + f * d)
            start += f * d
        return out

    def whiten(self, rows: np.ndarray, geometry: Geometry, places: Optional[Sequence[str]] = None
               ) -> Dict[str, np.ndarray]:
        """place -> [N, F, D] whitened features (float64) of these rows, for ``places`` (default: all)."""
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, self.vectors.shape[1])
        out = {}
        for place, sl in self._place_slices().items():
            if place not in geometry.factors or (places is not None and place not in places):
                continue
            f, d = self.layout[place]
            x = rows[:, sl].reshape(-1, f, d).astype(np.float64).transpose(1, 0, 2)  # [F, N, D]
            out[place] = np.matmul(x, geometry.factors[place]).transpose(1, 0, 2)    # [N, F, D], BLAS
        return out

    def fit(self, geometry: Geometry) -> None:
        """Whiten the stored rows with ``geometry`` (done once; again after a change)."""
        if geometry.layout() != {p: self.layout[p] for p in geometry.places if p in self.layout}:
            raise ValueError("the model's feature layout differs from the site memory's")
        self._geometry = geometry
        w = self.whiten(self.vectors, geometry)
        # per place: [F, N, D] float64 rows and their squared norms [F, N], for one BLAS product a query
        self._whitened = {p: (np.ascontiguousarray(v.transpose(1, 0, 2)), (v ** 2).sum(-1).T.copy())
                          for p, v in w.items()}
        self._labels = self.labels()

    def distances(self, whitened_query: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """place -> [Q, N] fold-averaged distances from whitened queries ``[Q, F, D]`` to every stored row."""
        if self._whitened is None:
            if self._geometry is None:
                raise RuntimeError("fit() the memory to a geometry first")
            self.fit(self._geometry)
        out = {}
        for place, q in whitened_query.items():
            stored = self._whitened.get(place)
            if stored is None or not stored[0].shape[1]:
                continue
            s, ss = stored                                                 # [F, N, D], [F, N]
            q = np.asarray(q, dtype=np.float64).transpose(1, 0, 2)         # [F, Q, D]
            # ||q - s||^2 = |q|^2 + |s|^2 - 2 q.s, per fold, then sqrt and mean over folds
            qq = (q ** 2).sum(-1)                                          # [F, Q]
            qs = np.matmul(q, s.transpose(0, 2, 1))                        # [F, Q, N]
            d2 = np.clip(qq[:, :, None] + ss[:, None, :] - 2 * qs, 0, None)
            out[place] = np.sqrt(d2).mean(0)                               # [Q, N]
        return out

    def neighbours(self, row: np.ndarray, skip_places: Sequence[str] = (),
                   places: Optional[Sequence[str]] = None) -> Neighbours:
        """The nearest distances per place (``places``, default all; ``fused`` always) and the voters
        of one feature row."""
        result = Neighbours()
        if not len(self) or self._geometry is None:
            return result
        wanted = None if places is None else set(places) | {"fused"}
        q = self.whiten(row, self._geometry, None if wanted is None else sorted(wanted))
        q = {p: v for p, v in q.items() if p not in skip_places}
        dists = self.distances(q)
        result.nearest = {p: float(d[0].min()) for p, d in dists.items()}
        radius = self._geometry.radius
        fused = dists.get("fused")
        if radius is not None and fused is not None:
            order = np.argsort(fused[0], kind="stable")[:K]
            result.voters = [(int(i), float(fused[0, i])) for i in order if fused[0, i] <= radius]
        return result

    def blend(self, probs: np.ndarray, voters: Sequence[Tuple[int, float]]) -> Tuple[np.ndarray, float]:
        """``(p, w)``: the shipped ``probs`` blended with the voters' labels; ``probs`` itself when none."""
        radius = self._geometry.radius if self._geometry is not None else None
        if not voters or not radius:
            return probs, 0.0
        labels = self._labels if self._whitened is not None else self.labels()
        kern = np.array([(1.0 - min(1.0, d / radius) ** 2) ** 2 for _, d in voters], dtype=np.float64)
        if kern.sum() <= 0:
            return probs, 0.0
        p_knn = np.zeros(len(probs), dtype=np.float64)
        for (i, _), k in zip(voters, kern):
            p_knn[labels[i]] += k
        p_knn /= kern.sum()
        # The nearest's kernel weight, scaled by how unsure the shipped model is: a confident shipped
        # answer (the out-of-source mistakes were unsure: 8 of 9 below 0.85) is not overruled by
        # neighbours that are merely the closest confirmed series; an unsure one follows them.
        w = float(kern[0]) * min(1.0, UNSURE_GAIN * (1.0 - float(np.max(probs))))
        if w <= 0:
            return probs, 0.0
        out = (1.0 - w) * probs.astype(np.float64) + w * p_knn
        return out.astype(np.float32), w

    def known_places(self, nearest: Mapping[str, float]) -> List[str]:
        """The places whose "unlike training data" flag a confirmed series within the threshold clears."""
        if self._geometry is None:
            return []
        return [p for p, d in nearest.items()
                if p in self._geometry.thresholds and d <= self._geometry.thresholds[p] * OOD_FACTOR]
