"""Each built-in's scenario: its parties, arguments, whose inputs (Teaclave's test data) and outputs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    parties: tuple[str, ...]
    arguments: dict = field(default_factory=dict)
    inputs: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)
    """data name → (owning party, path under examples/data, cmac of a teaclave-file-128 .enc or None)"""
    outputs: dict[str, str] = field(default_factory=dict)
    """data name → owning party"""


_GBDT = {
    "feature_size": 4, "max_depth": 4, "iterations": 100, "shrinkage": 0.1, "feature_sample_ratio": 1.0,
    "data_sample_ratio": 1.0, "min_leaf_size": 1, "loss": "LAD", "training_optimization_level": 2,
}  # fmt: skip

SCENARIOS = {
    s.name: s
    for s in (
        Scenario("builtin-echo", "returns its message", ("alice",), {"message": "Hello From Teaclave!"}),
        Scenario(
            "builtin-gbdt-train",
            "a data owner trains a GBDT model",
            ("owner",),
            _GBDT,
            {"training_data": ("owner", "gbdt_training/train.enc", "860030495909b84864b991865e9ad94f")},
            {"trained_model": "owner"},
        ),
        Scenario(
            "builtin-gbdt-predict",
            "a model owner scores a data owner's samples",
            ("scorer", "model_owner"),
            {},
            {
                "model_file": ("model_owner", "gbdt_prediction/model.txt", None),
                "data_file": ("scorer", "gbdt_prediction/test_data.txt", None),
            },
            {"result_file": "scorer"},
        ),
        Scenario(
            "builtin-logistic-regression-train",
            "a data owner trains a logistic regression",
            ("owner",),
            {"alg_alpha": 0.3, "alg_iters": 100, "feature_size": 30},
            {"training_data": ("owner", "logistic_regression_training/train.txt", None)},
            {"model_file": "owner"},
        ),
        Scenario(
            "builtin-logistic-regression-predict",
            "a model owner scores a data owner's rows",
            ("scorer", "model_owner"),
            {},
            {
                "model_file": ("model_owner", "logistic_regression_prediction/model.txt", None),
                "data_file": ("scorer", "logistic_regression_prediction/predict_input.txt", None),
            },
            {"result_file": "scorer"},
        ),
        Scenario(
            "builtin_online_decrypt",
            "decrypts a message inside the platform",
            ("alice",),
            {
                "key": "aqUdgZ0lJnuz9yiPkoDxMw==",
                "nonce": "AAECAwQFBgcICQoL",
                "encrypted_data": "OqMscYqxk1CshHQZulTrrDlJjS/v6BE/clWJyTerUw==",
                "algorithm": "aes128gcm",
            },
        ),
        Scenario(
            "builtin-ordered-set-intersect",
            "two users learn which of their sorted hashes they share",
            ("user0", "user1"),
            {"order": "ascending"},
            {
                "input_data1": ("user0", "ordered_set_intersect/psi0.txt.enc", "92f686d4ac2ba6b4ffd93bc7ac5dbf58"),
                "input_data2": ("user1", "ordered_set_intersect/psi1.txt.enc", "8b3104972a6f0de949315e0b45d5dd66"),
            },
            {"output_result1": "user0", "output_result2": "user1"},
        ),
        Scenario(
            "builtin-ordered-set-join",
            "two parties join their sorted tables",
            ("left", "right"),
            {"left_column": 0, "right_column": 0, "ascending": True, "drop": True},
            {
                "input_data1": ("left", "ordered_set_join/join0.csv.enc", "3f91d2744763445d265ea469debb74f0"),
                "input_data2": ("right", "ordered_set_join/join1.csv.enc", "d1e5a520489c93d0254c8c22cdefab89"),
            },
            {"output_result": "left"},
        ),
        Scenario(
            "builtin-rsa-sign",
            "signs with a key the platform never reveals",
            ("key_owner",),
            {"data": "test data"},
            {"rsa_key": ("key_owner", "rsa_sign/rsakey.enc", "620c16ab588ca638f3b0a2692ab078cf")},
        ),
        Scenario(
            "builtin_principal_components_analysis",
            "projects a data owner's rows onto 2 components",
            ("owner",),
            {"n": 2, "center": True, "feature_size": 4},
            {"input_data": ("owner", "princopal_components_analysis/input.txt", None)},
            {"output_data": "owner"},
        ),
        Scenario(
            "builtin-private-join-and-compute",
            "three banks total the customers they share",
            ("bank_a", "bank_b", "bank_c"),
            {"num_user": 3},
            {
                f"input_data{i}": (f"bank_{c}", f"private_join_and_compute/three_party_data/bank_{c}.enc", cmac)
                for i, (c, cmac) in enumerate(
                    (
                        ("a", "f6a4585a4903f8dea0ee90ac84a50dba"),
                        ("b", "ab6065314fcbacd6971ff55d3821b51e"),
                        ("c", "9d7dbe465806731a43008ab094c97688"),
                    )
                )
            },
            {f"output_data{i}": f"bank_{c}" for i, c in enumerate("abc")},
        ),
        Scenario(
            "builtin-password-check",
            "is my password among the exposed ones?",
            ("user", "list_owner"),
            {},
            {
                "password": ("user", "password_check/password.txt", None),
                "exposed_passwords": (
                    "list_owner",
                    "password_check/exposed_passwords.txt.enc",
                    "a31dd0b7de0b6cc7e0dec1dcf7a46479",
                ),
            },
        ),
    )
}
