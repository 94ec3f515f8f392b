"""``builtin-gbdt-train`` (reference §12.2): gradient-boosted regression trees, trained as gbdt-rs 0.1.1 does.

Each iteration fits one depth-limited CART tree to the loss's pseudo-residuals and adds ``shrinkage x tree``
to every sample's prediction. Split search is vectorized: a node keeps its samples sorted by every feature
(children inherit the order by a stable partition) and all thresholds are scored at once with cumulative
sums, in gbdt-rs's f64/f32 arithmetic and tie rules, so with sample ratios 1.0 the model is gbdt-rs's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cloister.functions import FileRuntime, FunctionError
from cloister.functions._arguments import number, string, u32, unsigned
from cloister.functions._float_text import check_float, rust_trim
from cloister.functions._gbdt import (
    Config,
    F32Values,
    Model,
    Tree,
    dump_model,
    plain_float_line,
    tree_values,
)
from cloister.functions._text import lines

NAME = "builtin-gbdt-train"
TRAINABLE_LOSSES = ("SquaredError", "LogLikelyhood", "LAD")
_F64_MAX = float(np.finfo(np.float64).max)
_F32_COUNT_LIMIT = 2**24  # an f32 running count of 1.0s stops growing here
_BLOCK = 2**16  # candidate thresholds scored per batch: bounds memory and keeps the batch in cache
_TIE = np.float32(1e-5)  # the largest f32 below 1e-5, so `d <= _TIE` is gbdt-rs's `(d as f64) < 1e-5`


def _usize(value: float) -> int:
    """Rust's ``value as usize``: NaN and negatives become 0, large values saturate."""
    return 0 if not value > 0 else min(int(value) if np.isfinite(value) else 2**64 - 1, 2**64 - 1)


def _config(arguments: dict[str, Any]) -> Config:
    with np.errstate(over="ignore"):
        shrinkage = np.float32(number(arguments, "shrinkage"))  # serde reads f64, then `as f32`
    config = Config(
        feature_size=unsigned(arguments, "feature_size"),
        max_depth=u32(arguments, "max_depth"),
        iterations=unsigned(arguments, "iterations"),
        shrinkage=shrinkage,
        feature_sample_ratio=number(arguments, "feature_sample_ratio"),
        data_sample_ratio=number(arguments, "data_sample_ratio"),
        min_leaf_size=unsigned(arguments, "min_leaf_size"),
        loss=string(arguments, "loss"),
        training_optimization_level=min(unsigned(arguments, "training_optimization_level", 256), 2),
    )
    if config.loss not in TRAINABLE_LOSSES:
        # gbdt-rs itself would print a warning and train SquaredError; an explicit failure is safer.
        raise FunctionError("Invalid loss type")
    return config


def _read_samples(runtime: FileRuntime, feature_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, feature_size) and labels (n,) as f32, with the reference's error texts."""
    columns = (feature_size + 1) % 2**64  # usize arithmetic
    values = F32Values()
    count = 0
    with runtime.open_input("training_data") as stream:
        for line in lines(stream):
            trimmed = rust_trim(line)
            if not trimmed:
                raise FunctionError("Empty line")
            fields = trimmed.split(",")
            if not plain_float_line(trimmed):
                for field in fields:
                    check_float(field)
            if len(fields) != columns:
                raise FunctionError(f"Data format error: column len = {len(fields)}, expected = {columns}")
            values.extend(fields)
            count += 1
    table = values.array().reshape(count, columns)
    if np.isnan(table).any():
        raise FunctionError("Data format error: NaN is not supported")  # gbdt-rs panics sorting NaN
    return np.ascontiguousarray(table[:, :-1]), np.ascontiguousarray(table[:, -1])


def _f32_count(count: int) -> np.float32:
    return np.float32(min(count, _F32_COUNT_LIMIT))


def _bias(loss: str, labels: np.ndarray) -> np.float32:
    """The initial guess: label mean, ``ln((1+v)/(1-v))/2`` of it, or gbdt-rs's weighted label median."""
    if loss == "LAD":
        if len(labels) == 0:
            return np.float32(0.0)
        ordered = np.sort(labels)
        i = int(_f32_count(len(labels))) // 2  # the first index where the running weight passes half
        if i == 0:
            raise FunctionError("LAD loss needs at least two lines of data")  # gbdt-rs indexes [i - 1] and panics
        # gbdt-rs tests `i - 1 > 0`, so the median of 2 or 3 labels is the second one.
        return ordered[1] if i == 1 else np.float32((ordered[i] + ordered[i - 1]) / np.float32(2))
    total = np.cumsum(labels, dtype=np.float32)[-1] if len(labels) else np.float32(0.0)
    mean = np.float32(total / _f32_count(len(labels)))
    if loss == "LogLikelyhood":
        one = np.float32(1.0)
        return np.float32(np.log((one + mean) / (one - mean)) / np.float32(2))
    return mean


def _sequential_sum(values: np.ndarray) -> float:
    """An f64 sum added left to right, as gbdt-rs's loops add."""
    return float(np.cumsum(values)[-1]) if len(values) else 0.0


def _remaining(values: np.ndarray, total: float) -> np.ndarray:
    """``total`` minus each row's values one at a time (gbdt-rs's right-hand sums), rounded as it rounds."""
    run = np.empty((len(values), values.shape[1] + 1))
    run[:, 0] = total
    np.negative(values, out=run[:, 1:])
    return np.cumsum(run, axis=1, out=run)[:, 1:]


def _impurity(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray, single: int) -> np.ndarray:
    """gbdt-rs's ``ss - s*s/c``, 0 for a one-sample side (column ``single``), clamped at 0 (NaN kept)."""
    out = np.multiply(sums, sums)
    out /= counts
    np.subtract(squares, out, out=out)
    out[:, single] = 0.0
    return np.maximum(out, 0.0, out=out)


@dataclass
class _Sorted:
    """A node's samples sorted by each feature: row f of ``order`` holds ids, of ``values`` their f32 values."""

    order: np.ndarray
    values: np.ndarray

    def part(self, mask: np.ndarray, count: int) -> _Sorted:
        """The ``count`` masked samples (the same ones in every row), still sorted."""
        rows = len(self.order)
        if rows == 0:
            return _Sorted(np.empty((0, count), dtype=np.int64), np.empty((0, count), dtype=np.float32))
        kept = np.flatnonzero(mask)  # faster than boolean indexing, and shared by both arrays
        return _Sorted(self.order.ravel()[kept].reshape(rows, count), self.values.ravel()[kept].reshape(rows, count))


class _TreeBuilder:
    """Grows one tree depth-first, numbering nodes in preorder as gbdt-rs's binary tree does."""

    def __init__(self, config: Config, target: np.ndarray, residual: np.ndarray, rng: Any) -> None:
        self.config = config
        self.target = target
        self.residual = residual
        self.s = target.astype(np.float64)  # target x weight, every weight being 1.0
        # LAD targets are +-1: every square is 1 and every partial sum an exact integer, however added.
        self.unit_targets = config.loss == "LAD"
        self.logit_c = None
        if config.loss == "LogLikelyhood":
            y = np.abs(self.s)
            self.logit_c = (y * (2.0 - y)).astype(np.float32).astype(np.float64)
        self.rng = rng
        self.goes_left = np.zeros(len(target), dtype=bool)
        self.leaf_value = np.zeros(len(target), dtype=np.float32)
        self.nodes: list[list[Any]] = []  # [feature_index, feature_value, pred, is_leaf, left, right]

    def _value(self, members: np.ndarray) -> np.float32:
        """A node's prediction: residual median (LAD), Newton step (LogLikelyhood) or target mean."""
        m = len(members)
        if self.config.loss == "LAD":
            if m == 0:
                return np.float32(0.0)
            residual = self.residual[members]
            if np.isnan(residual).any():
                raise FunctionError("Data format error: NaN is not supported")
            i = m // 2  # gbdt-rs's first index past half the weight; it averages with the one before
            if i == 0:
                return residual[0]
            low, high = np.partition(residual, [i - 1, i])[i - 1 : i + 1]
            return np.float32((high + low) / np.float32(2))
        total = _sequential_sum(self.s[members])
        weight = _sequential_sum(self.logit_c[members]) if self.logit_c is not None else float(m)
        return np.float32(0.0) if abs(weight) < 1e-10 else np.float32(total / weight)

    def _same(self, members: np.ndarray) -> bool:
        if len(members) == 0:
            return False
        t = self.target[members]
        return bool(np.all(np.abs(t - t[0]) <= _TIE))

    def _scores(self, order: np.ndarray, values: np.ndarray, totals: tuple[float, float], lc: np.ndarray) -> np.ndarray:
        """Impurity of splitting after each sorted position, per feature row; inf where gbdt-rs would not."""
        tied = np.abs(values[:, 1:] - values[:, :-1]) <= _TIE
        s = self.s[order[:, :-1]]
        ls = np.cumsum(s, axis=1)
        rc = len(lc) + 1 - lc
        if self.unit_targets:
            lss, rss, rs = lc, rc, totals[0] - ls
        else:
            ss = s * s
            lss, rs, rss = np.cumsum(ss, axis=1), _remaining(s, totals[0]), _remaining(ss, totals[1])
        fitness = _impurity(ls, lss, lc, 0)
        fitness += _impurity(rs, rss, rc, -1)
        fitness[tied | ~(fitness < _F64_MAX)] = np.inf
        return fitness

    def _best(self, features: np.ndarray, node: _Sorted, members: np.ndarray) -> tuple[float, int, int]:
        """The lowest impurity over ``features`` (the first on ties): (impurity, row in features, position)."""
        m = node.order.shape[1]
        s = self.s[members]
        totals = (_sequential_sum(s), _sequential_sum(s * s))
        lc = np.arange(1.0, m)
        every = len(features) == len(node.order)
        best = (np.inf, -1, -1)
        step = max(1, _BLOCK // m)
        for start in range(0, len(features), step):
            rows = slice(start, start + step) if every else features[start : start + step]
            scores = self._scores(node.order[rows], node.values[rows], totals, lc)
            position = np.argmin(scores, axis=1)
            lowest = scores[np.arange(len(scores)), position]
            row = int(np.argmin(lowest))
            if lowest[row] < best[0]:
                best = (float(lowest[row]), start + row, int(position[row]))
        return best

    def _split(self, members: np.ndarray, node: _Sorted) -> tuple[int, np.float32, _Sorted, _Sorted] | None:
        count = len(node.order)
        ratio = self.config.feature_sample_ratio
        features = self.rng.permutation(count)[: _usize(ratio * count)] if ratio < 1.0 else np.arange(count)
        if len(features) == 0 or len(members) < 2:
            return None
        impurity, row, position = self._best(features, node, members)
        if not impurity < np.inf:
            return None
        feature = int(features[row])
        low, high = node.values[feature, position : position + 2]
        threshold = np.float32((low + high) / np.float32(2))
        goes_left = node.values[feature] < threshold
        left_count = int(goes_left.sum())
        if left_count in (0, len(members)):
            return None
        self.goes_left[node.order[feature]] = goes_left
        mask = self.goes_left[node.order]
        return feature, threshold, node.part(mask, left_count), node.part(~mask, len(members) - left_count)

    def build(self, members: np.ndarray, node: _Sorted) -> Tree:
        pending = [(0, members, node, -1, False)]
        while pending:
            depth, members, node, parent, is_left = pending.pop()
            index = len(self.nodes)
            if parent >= 0:
                self.nodes[parent][4 if is_left else 5] = index
            pred = self._value(members)
            self.nodes.append([0, np.float32(0.0), pred, True, 0, 0])
            split = None
            if depth < self.config.max_depth and not self._same(members) and len(members) > self.config.min_leaf_size:
                split = self._split(members, node)
            if split is None:
                self.leaf_value[members] = pred
                continue
            feature, threshold, left, right = split
            self.nodes[index][:4] = [feature, threshold, pred, False]
            pending.append((depth + 1, right.order[feature], right, index, False))
            pending.append((depth + 1, left.order[feature], left, index, True))
        return self._tree()

    def _tree(self) -> Tree:
        c = self.config
        columns = list(zip(*self.nodes, strict=True))
        return Tree(
            feature_index=np.array(columns[0], dtype=np.int64),
            feature_value=np.array(columns[1], dtype=np.float32),
            pred=np.array(columns[2], dtype=np.float32),
            missing=np.zeros(len(self.nodes), dtype=np.int8),
            is_leaf=np.array(columns[3], dtype=bool),
            index=np.arange(len(self.nodes), dtype=np.int64),
            left=np.array(columns[4], dtype=np.int64),
            right=np.array(columns[5], dtype=np.int64),
            feature_size=c.feature_size,
            max_depth=c.max_depth,
            min_leaf_size=c.min_leaf_size,
            loss=c.loss,
            feature_sample_ratio=c.feature_sample_ratio,
        )


def _targets(loss: str, labels: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's tree target (the negative gradient) and residual ``label - prediction`` (f32)."""
    residual = labels - predicted
    if loss == "LAD":
        return np.where(residual >= 0, np.float32(1.0), np.float32(-1.0)).astype(np.float32), residual
    if loss == "LogLikelyhood":
        two_y = np.float32(2.0) * labels
        return two_y / (np.float32(1.0) + np.exp(two_y * predicted)), residual
    return residual, residual


def fit(config: Config, features: np.ndarray, labels: np.ndarray, rng: Any = None) -> Model:
    """Train a gbdt-rs model; ``rng`` (numpy Generator) draws the samples when a ratio is below 1.0."""
    rng = rng if rng is not None else np.random.default_rng()
    n = len(labels)
    xt = np.ascontiguousarray(features.T)
    order = np.argsort(xt, axis=1, kind="stable")
    everyone = _Sorted(order, np.take_along_axis(xt, order, axis=1))
    widths = np.full(n, config.feature_size)
    trees: list[Tree] = []
    with np.errstate(all="ignore"):
        bias = _bias(config.loss, labels)
        predicted = np.full(n, bias, dtype=np.float32)
        sampled = _usize(n * config.data_sample_ratio) if config.data_sample_ratio < 1.0 else n
        for _ in range(config.iterations):
            subset, remaining = np.arange(n), np.arange(0)
            if sampled < n:
                shuffled = rng.permutation(n)
                subset, remaining = np.sort(shuffled[:sampled]), np.sort(shuffled[sampled:])
            target, residual = _targets(config.loss, labels, predicted)
            builder = _TreeBuilder(config, target, residual, rng)
            root = everyone if sampled >= n else everyone.part(np.isin(order, subset), len(subset))
            tree = builder.build(subset, root)
            values = builder.leaf_value
            if len(remaining):
                values[remaining] = tree_values(tree, features[remaining], widths[remaining])
            predicted = predicted + values * config.shrinkage
            trees.append(tree)
    return Model(config, trees, bias)


def run(arguments: dict[str, Any], runtime: FileRuntime) -> str:
    config = _config(arguments)
    features, labels = _read_samples(runtime, config.feature_size)
    model = fit(config, features, labels)
    with runtime.create_output("trained_model") as stream:
        stream.write(dump_model(model).encode())
    return f"Trained {len(labels)} lines of data."
