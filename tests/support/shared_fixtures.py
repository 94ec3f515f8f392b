"""Where the shared test data is: ``../shared`` beside the checkout (as in CI), or ``$CLOISTER_SHARED_DIR``."""

from __future__ import annotations

import os
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CLOISTER_SHARED_DIR") or REPOSITORY.parent / "shared")
TEACLAVE_FIXTURES = SHARED / "fixtures" / "teaclave"

# §7.4 "Verified fixtures": path under functions/ -> cmac (the metadata gmac)
FIXTURE_CMACS = {
    "gbdt_training/train.enc": "860030495909b84864b991865e9ad94f",
    "py_logistic_reg/train.enc": "00780510adc603725ec240ab979681f0",
    "py_logistic_reg/predict.enc": "3397954d135f47bcc4ffbb90a0bb51c9",
    "ordered_set_intersect/psi0.txt.enc": "92f686d4ac2ba6b4ffd93bc7ac5dbf58",
    "ordered_set_intersect/psi1.txt.enc": "8b3104972a6f0de949315e0b45d5dd66",
    "ordered_set_join/join0.csv.enc": "3f91d2744763445d265ea469debb74f0",
    "ordered_set_join/join1.csv.enc": "d1e5a520489c93d0254c8c22cdefab89",
    "password_check/exposed_passwords.txt.enc": "a31dd0b7de0b6cc7e0dec1dcf7a46479",
    "rsa_sign/rsakey.enc": "620c16ab588ca638f3b0a2692ab078cf",
    "wamr_rust_psi/psi0.txt.enc": "fd9b319ae0fc595a98ee4135667ac0ac",
    "wamr_rust_psi/psi1.txt.enc": "93cc677d7bac5910cd7199f7d6b9ac15",
    "wamr_tvm_mnist/img_10.jpg.enc": "818fc6295fcd6816c0549dd29f32ed9e",
    "private_join_and_compute/three_party_data/bank_a.enc": "f6a4585a4903f8dea0ee90ac84a50dba",
    "private_join_and_compute/three_party_data/bank_b.enc": "ab6065314fcbacd6971ff55d3821b51e",
    "private_join_and_compute/three_party_data/bank_c.enc": "9d7dbe465806731a43008ab094c97688",
}


def fixture_cmac(path: str) -> bytes:
    """The cmac of Teaclave's encrypted fixture ``functions/<path>``."""
    return bytes.fromhex(FIXTURE_CMACS[path])


GBDT_TRAIN_ARGUMENTS = {
    "feature_size": 4,
    "max_depth": 4,
    "iterations": 100,
    "shrinkage": 0.1,
    "feature_sample_ratio": 1.0,
    "data_sample_ratio": 1.0,
    "min_leaf_size": 1,
    "loss": "LAD",
    "training_optimization_level": 2,
}
"""The arguments Teaclave trained its fixture model ``gbdt_training/`` with."""
TEE_EVIDENCE = SHARED / "fixtures" / "tee-evidence"
"""Real SGX, TDX, SEV-SNP and Nitro evidence with the windows in which each verifies (its NOTICE.md)."""
