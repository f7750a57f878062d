"""The dataset factory: a dataset is a local Minari dataset with D4RL's reference scores and a
canonical Parquet, deterministic from its seed; levels that need policies say how to get them."""

from __future__ import annotations

import importlib.metadata
import warnings

import minari
import numpy as np
import pytest

from o2o.platform.data import read_parquet
from o2o.platform.factory import FactoryError, make_dataset, rollout, split_name


def test_made_dataset_is_minari_with_reference_scores(hopper_random) -> None:
    dataset = minari.load_dataset("o2o/hopper/random-v0")
    assert dataset.total_steps == 3000
    assert dataset.spec.env_spec.id == "Hopper-v5"
    assert dataset.storage.metadata["ref_min_score"] == pytest.approx(-20.272305)
    assert dataset.storage.metadata["ref_max_score"] == pytest.approx(3234.3)
    data = read_parquet(hopper_random.parquet_path)
    assert len(data) == 3000 and data.obs_dim == 11 and data.act_dim == 3
    assert np.abs(data.actions).max() <= 1.0


def test_made_dataset_records_the_code_that_made_it_and_warns_of_nothing(tmp_path, monkeypatch) -> None:
    """A user making a dataset sees its progress, not Minari's requests for metadata; the code
    version is kept in the dataset, since datasets made by other code differ in content."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("O2O_HOME", str(tmp_path / "o2o"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_dataset("hopper-random", size=200, seed=0)
    assert [str(w.message) for w in caught if "minari" in w.filename] == []
    metadata = minari.load_dataset("o2o/hopper/random-v0").storage.metadata
    assert metadata["code_permalink"].startswith(f"o2o.version {importlib.metadata.version('o2o')}")
    assert "o2o dataset factory" in metadata["author"]


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = rollout("Hopper-v5", None, 500, seed=3, num_envs=2)
    b = rollout("Hopper-v5", None, 500, seed=3, num_envs=2)
    c = rollout("Hopper-v5", None, 500, seed=4, num_envs=2)
    assert sum(len(e["rewards"]) for e in a) == 500
    np.testing.assert_array_equal(np.concatenate([e["actions"] for e in a]), np.concatenate([e["actions"] for e in b]))
    assert not np.array_equal(np.concatenate([e["actions"] for e in a]), np.concatenate([e["actions"] for e in c]))


def test_level_without_policies_says_how_to_train_them(tmp_path) -> None:
    with pytest.raises(FactoryError, match="o2o datasets train-policies walker2d"):
        make_dataset("walker2d-medium", size=100, policy_dir=tmp_path)


def test_names_are_checked() -> None:
    assert split_name("walker2d-medium-replay") == ("walker2d", "medium-replay")
    with pytest.raises(FactoryError, match="unknown task 'pong'"):
        split_name("pong-medium")
