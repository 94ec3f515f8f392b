"""The GBDT model of gbdt-rs 0.1.1 (reference §12.2-§12.3): its JSON form, read and written byte for byte as
serde_json does, and prediction in f32 arithmetic. Also the f32 text parsing both GBDT built-ins share.

A model is ``{"conf":{...},"trees":[...],"bias":f32}``; each tree keeps its nodes in one array, node 0 the root,
children by position (0 = none), so trees are held here as parallel numpy arrays.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

from cloister.functions import FunctionError
from cloister.functions._float_text import FLOAT_PATTERN, ryu_layout, serde_json_f64

# serde's names for gbdt-rs's ``Loss`` variants; only the first three can be trained.
LOSSES = (
    "SquaredError",
    "LogLikelyhood",
    "LAD",
    "RegLinear",
    "RegLogistic",
    "BinaryLogistic",
    "BinaryLogitraw",
    "MultiSoftprob",
    "MultiSoftmax",
    "RankPairwise",
)
F32_UNKNOWN = np.float32(np.finfo(np.float32).min)  # gbdt-rs's VALUE_TYPE_UNKNOWN: a missing feature value
_USIZE = 2**64
_I64_MAX = 2**63 - 1  # larger node or feature indexes cannot exist anyway; clamping keeps them int64


# --- numbers as Rust reads and writes them -------------------------------------------------------------

_FLOAT_LINE = re.compile(rf"{FLOAT_PATTERN}(?:,{FLOAT_PATTERN})*", re.IGNORECASE)
_CHUNK = 1 << 16


def plain_float_line(text: str) -> bool:
    """Whether ``text`` is comma-separated floats with nothing around them (the common, fast case)."""
    return _FLOAT_LINE.fullmatch(text) is not None


def _exact_f32(text: str) -> np.float32:
    """Round the decimal ``text`` to the nearest f32 (ties to even), exactly."""
    exact = Fraction(Decimal(text))
    with np.errstate(over="ignore"):
        guess = np.float32(float(text))
    infinity = np.float32(np.inf)
    candidates = [guess, np.nextafter(guess, -infinity), np.nextafter(guess, infinity)]

    def distance(candidate: np.float32) -> tuple[Fraction, int]:
        value = Fraction(2**128) * (1 if candidate > 0 else -1) if np.isinf(candidate) else Fraction(float(candidate))
        return abs(value - exact), int(candidate.view(np.uint32)) & 1

    return min(candidates, key=distance)


def to_f32(texts: list[str]) -> np.ndarray:
    """The f32 values of texts already passed by ``check_float``, correctly rounded as Rust parses them.

    Going through f64 rounds twice; that can only go wrong when the f64 lands exactly on the midpoint
    between two f32 values (or below f32's normal range), so exactly those are redone from the text.
    """
    doubles = np.fromiter(map(float, texts), dtype=np.float64, count=len(texts))
    with np.errstate(over="ignore"):
        singles = doubles.astype(np.float32)
    bits = doubles.view(np.uint64)
    risky = ((bits & 0x1FFFFFFF) == 0x10000000) | ((((bits >> 52) & 0x7FF) < 897) & (doubles != 0))
    for i in np.flatnonzero(risky):
        singles[i] = _exact_f32(texts[i])
    return singles


class F32Values:
    """Float texts gathered line by line, converted to f32 in chunks so memory stays near 4 bytes a value."""

    def __init__(self) -> None:
        self._texts: list[str] = []
        self._chunks: list[np.ndarray] = []

    def extend(self, texts: list[str]) -> None:
        self._texts.extend(texts)
        if len(self._texts) >= _CHUNK:
            self._chunks.append(to_f32(self._texts))
            self._texts = []

    def array(self) -> np.ndarray:
        return np.concatenate([*self._chunks, to_f32(self._texts)])


def f32_text(value: float | np.float32) -> str:
    """serde_json's text for an f32, laid out as the ``ryu`` crate's ``format32`` does: shortest round-trip digits,
    positional from 1e-6 up to 1e13 (``1.6500001``, ``0.000001``, ``1e-7``, ``1.2345679e13``); ``null`` if not finite.
    """
    single = np.float32(value)
    if not np.isfinite(single):
        return "null"
    if single == 0:
        return "-0.0" if np.signbit(single) else "0.0"
    mantissa, exponent = np.format_float_scientific(single, unique=True, trim="-").split("e")
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "")
    kk = int(exponent) + 1  # 10^(kk-1) <= |value| < 10^kk
    return ryu_layout(sign, digits, kk, positional_below=13, positional_from=-6)


# --- the model ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """gbdt-rs ``Config``, fields in serialization order."""

    feature_size: int
    max_depth: int
    iterations: int
    shrinkage: np.float32
    feature_sample_ratio: float
    data_sample_ratio: float
    min_leaf_size: int
    loss: str
    debug: bool = False
    initial_guess_enabled: bool = False
    training_optimization_level: int = 2


@dataclass
class Tree:
    """One ``DecisionTree``: node arrays (position = node index) and the parameters it serializes."""

    feature_index: np.ndarray  # int64
    feature_value: np.ndarray  # float32
    pred: np.ndarray  # float32
    missing: np.ndarray  # int8: -1 go left, 0 stop here, 1 go right when the feature is unknown
    is_leaf: np.ndarray  # bool
    index: np.ndarray  # int64, the node's own ``index`` field (written back unchanged)
    left: np.ndarray  # int64, 0 = no child
    right: np.ndarray  # int64
    feature_size: int
    max_depth: int
    min_leaf_size: int
    loss: str
    feature_sample_ratio: float


@dataclass
class Model:
    """A ``GBDT``: its config, one tree per iteration, and the initial guess every prediction starts from."""

    conf: Config
    trees: list[Tree]
    bias: np.float32


# --- JSON writing ---------------------------------------------------------------------------------------


def _tree_json(tree: Tree) -> str:
    nodes = ",".join(
        f'{{"value":{{"feature_index":{int(tree.feature_index[i])},"feature_value":{f32_text(tree.feature_value[i])},'
        f'"pred":{f32_text(tree.pred[i])},"missing":{int(tree.missing[i])},'
        f'"is_leaf":{"true" if tree.is_leaf[i] else "false"}}},'
        f'"index":{int(tree.index[i])},"left":{int(tree.left[i])},"right":{int(tree.right[i])}}}'
        for i in range(len(tree.pred))
    )
    return (
        f'{{"tree":{{"tree":[{nodes}]}},"feature_size":{tree.feature_size},"max_depth":{tree.max_depth},'
        f'"min_leaf_size":{tree.min_leaf_size},"loss":"{tree.loss}",'
        f'"feature_sample_ratio":{serde_json_f64(tree.feature_sample_ratio)}}}'
    )


def dump_model(model: Model) -> str:
    """The model as ``serde_json::to_string`` writes a gbdt-rs ``GBDT``."""
    c = model.conf
    conf = (
        f'{{"feature_size":{c.feature_size},"max_depth":{c.max_depth},"iterations":{c.iterations},'
        f'"shrinkage":{f32_text(c.shrinkage)},"feature_sample_ratio":{serde_json_f64(c.feature_sample_ratio)},'
        f'"data_sample_ratio":{serde_json_f64(c.data_sample_ratio)},"min_leaf_size":{c.min_leaf_size},'
        f'"loss":"{c.loss}","debug":{"true" if c.debug else "false"},'
        f'"initial_guess_enabled":{"true" if c.initial_guess_enabled else "false"},'
        f'"training_optimization_level":{c.training_optimization_level}}}'
    )
    trees = ",".join(_tree_json(tree) for tree in model.trees)
    return f'{{"conf":{conf},"trees":[{trees}],"bias":{f32_text(model.bias)}}}'


# --- JSON reading (serde's rules: every field required, extra fields ignored, strict types) ----------------


class _ModelFormatError(Exception):
    pass


def _field(obj: Any, name: str) -> Any:
    if not isinstance(obj, dict):
        raise _ModelFormatError("expected a struct")
    if name not in obj:
        raise _ModelFormatError(f"missing field `{name}`")
    return obj[name]


def _uint(obj: Any, name: str, limit: int = _USIZE, low: int = 0) -> int:
    value = _field(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < limit:
        raise _ModelFormatError(f"invalid value for `{name}`")
    return value


def _index(obj: Any, name: str) -> int:
    return min(_uint(obj, name), _I64_MAX)


def _float(obj: Any, name: str) -> float:
    value = _field(obj, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _ModelFormatError(f"invalid value for `{name}`")
    return float(value)


def _f32(obj: Any, name: str) -> np.float32:
    with np.errstate(over="ignore"):
        return np.float32(_float(obj, name))  # serde_json reads an f64 and casts it (`as f32`)


def _bool(obj: Any, name: str) -> bool:
    value = _field(obj, name)
    if not isinstance(value, bool):
        raise _ModelFormatError(f"invalid value for `{name}`")
    return value


def _loss(obj: Any) -> str:
    value = _field(obj, "loss")
    if value not in LOSSES:
        raise _ModelFormatError("unknown variant for `loss`")
    return value


def _read_tree(obj: Any) -> Tree:
    nodes = _field(_field(obj, "tree"), "tree")
    if not isinstance(nodes, list):
        raise _ModelFormatError("invalid value for `tree`")
    values = [_field(node, "value") for node in nodes]
    return Tree(
        feature_index=np.array([_index(v, "feature_index") for v in values], dtype=np.int64),
        feature_value=np.array([_f32(v, "feature_value") for v in values], dtype=np.float32),
        pred=np.array([_f32(v, "pred") for v in values], dtype=np.float32),
        missing=np.array([_uint(v, "missing", 128, -128) for v in values], dtype=np.int8),
        is_leaf=np.array([_bool(v, "is_leaf") for v in values], dtype=bool),
        index=np.array([_index(n, "index") for n in nodes], dtype=np.int64),
        left=np.array([_index(n, "left") for n in nodes], dtype=np.int64),
        right=np.array([_index(n, "right") for n in nodes], dtype=np.int64),
        feature_size=_uint(obj, "feature_size"),
        max_depth=_uint(obj, "max_depth", 2**32),
        min_leaf_size=_uint(obj, "min_leaf_size"),
        loss=_loss(obj),
        feature_sample_ratio=_float(obj, "feature_sample_ratio"),
    )


def _reject_constant(name: str) -> Any:
    raise _ModelFormatError(f"invalid number {name}")  # serde_json has no NaN/Infinity literals


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _ModelFormatError("duplicate field")  # serde rejects a struct field given twice
    return obj


def load_model(text: str) -> Model:
    """Parse a gbdt-rs model as ``serde_json::from_str::<GBDT>`` would accept it.

    Raises:
        FunctionError: ``Invalid model: <detail>`` for malformed JSON or a missing/ill-typed field.
    """
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
        conf = _field(obj, "conf")
        trees = _field(obj, "trees")
        if not isinstance(trees, list):
            raise _ModelFormatError("invalid value for `trees`")
        return Model(
            conf=Config(
                feature_size=_uint(conf, "feature_size"),
                max_depth=_uint(conf, "max_depth", 2**32),
                iterations=_uint(conf, "iterations"),
                shrinkage=_f32(conf, "shrinkage"),
                feature_sample_ratio=_float(conf, "feature_sample_ratio"),
                data_sample_ratio=_float(conf, "data_sample_ratio"),
                min_leaf_size=_uint(conf, "min_leaf_size"),
                loss=_loss(conf),
                debug=_bool(conf, "debug"),
                initial_guess_enabled=_bool(conf, "initial_guess_enabled"),
                training_optimization_level=_uint(conf, "training_optimization_level", 256),
            ),
            trees=[_read_tree(tree) for tree in trees],
            bias=_f32(obj, "bias"),
        )
    except (_ModelFormatError, ValueError, RecursionError) as error:
        raise FunctionError(f"Invalid model: {error}") from None


# --- prediction -----------------------------------------------------------------------------------------


def tree_values(tree: Tree, rows: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Each row's value from one tree: walk from node 0, left when ``x < feature_value`` (f32).

    ``rows`` is an (n, w) float32 matrix whose row i holds ``widths[i]`` real features. A row lacking a feature a
    node asks for, a missing child or a cycle fails, where gbdt-rs would panic.
    """
    count = len(tree.pred)
    if count == 0:
        raise FunctionError("Invalid model: decision tree has no root node")
    out = np.empty(len(rows), dtype=np.float32)
    sample = np.arange(len(rows))
    node = np.zeros(len(rows), dtype=np.int64)
    for _ in range(count):
        if sample.size == 0:
            return out
        leaf = tree.is_leaf[node]
        feature = tree.feature_index[node]
        if np.any(~leaf & (feature >= widths[sample])):
            raise FunctionError("sample doesn't have the feature")
        x = rows[sample, np.where(leaf, 0, feature)] if rows.shape[1] else np.zeros(sample.size, np.float32)
        unknown = ~leaf & (x == F32_UNKNOWN)
        policy = tree.missing[node]
        stop = leaf | (unknown & (policy == 0))
        out[sample[stop]] = tree.pred[node[stop]]
        go_left = np.where(unknown, policy == -1, x < tree.feature_value[node])
        following = np.where(go_left, tree.left[node], tree.right[node])[~stop]
        if np.any((following == 0) | (following >= count)):
            raise FunctionError("Invalid model: child node not found")
        sample, node = sample[~stop], following
    if sample.size:
        raise FunctionError("Invalid model: decision tree has a cycle")
    return out


def predict(model: Model, rows: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """``GBDT::predict``: bias plus ``shrinkage * tree`` for every tree in turn (f32), then the loss's link."""
    if model.conf.iterations != len(model.trees):
        raise FunctionError("Invalid model: iterations differ from the number of trees")
    with np.errstate(all="ignore"):
        if not model.trees:
            values = np.full(len(rows), F32_UNKNOWN, dtype=np.float32)
        else:
            values = np.full(len(rows), model.bias, dtype=np.float32)
            for tree in model.trees:
                values = values + model.conf.shrinkage * tree_values(tree, rows, widths)
        one = np.float32(1.0)
        if model.conf.loss == "LogLikelyhood":
            return one / (one + np.exp(np.float32(-2.0) * values))
        if model.conf.loss in ("BinaryLogistic", "RegLogistic"):
            return one / (one + np.exp(-values))
        return values


def prediction_text(value: np.float32) -> str:
    """Rust's ``{:.10}`` of an f32: its exact decimal value rounded (ties to even) to ten places."""
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(float(value), ".10f")
