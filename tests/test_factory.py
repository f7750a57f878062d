"""The dataset factory: a dataset is a local Minari dataset with D4RL's reference scores and a
canonical Parquet, deterministic from its seed; levels that need policies say how to get them."""

from __future__ import annotations

import importlib.metadata
import shutil
import warnings

import gymnasium as gym
import minari
import numpy as np
import pytest

from o2o.platform.data import read_parquet, resolve_dataset
from o2o.platform.factory import TASKS, FactoryError, _Locomotion, make_dataset, rollout, split_name


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


def test_a_size_in_the_name_makes_its_own_dataset(tmp_path, monkeypatch) -> None:
    """'hopper-random-200' is a dataset of its own beside 'hopper-random' (another Minari id,
    another cache entry), resolvable by its name; asked again, it is the one already made."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("O2O_HOME", str(tmp_path / "o2o"))
    full = make_dataset("hopper-random", size=300, seed=0)
    sized = make_dataset("hopper-random-200", seed=0)
    assert sorted(minari.list_local_datasets()) == ["o2o/hopper/random-200-v0", "o2o/hopper/random-v0"]
    assert (full.num_transitions, sized.num_transitions) == (300, 200)
    assert resolve_dataset("hopper-random-200").content_hash == sized.content_hash != full.content_hash
    assert make_dataset("hopper-random-200").content_hash == sized.content_hash


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = rollout("Hopper-v5", None, 500, seed=3, num_envs=2)
    b = rollout("Hopper-v5", None, 500, seed=3, num_envs=2)
    c = rollout("Hopper-v5", None, 500, seed=4, num_envs=2)
    assert sum(len(e["rewards"]) for e in a) == 500
    np.testing.assert_array_equal(np.concatenate([e["actions"] for e in a]), np.concatenate([e["actions"] for e in b]))
    assert not np.array_equal(np.concatenate([e["actions"] for e in a]), np.concatenate([e["actions"] for e in c]))


def test_same_seed_same_dataset_whatever_the_number_of_worker_processes(tmp_path, monkeypatch) -> None:
    """The rollout's layout (groups of envs with their own seeds and shares of the steps) fixes
    the data: a make in one process and a make by two worker processes, each in its own home,
    give the same content, so a dataset does not depend on the cores of the machine making it.
    The made dataset is converted from memory; read back from Minari it has the same hash."""
    hashes = []
    for workers in (1, 2):
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / f"minari-{workers}"))
        monkeypatch.setenv("O2O_HOME", str(tmp_path / f"o2o-{workers}"))
        seen: list[int] = []
        made = make_dataset("hopper-medium", size=3000, seed=5, workers=workers, progress=lambda done, total, seen=seen: seen.append(done))
        assert made.num_transitions == 3000 and seen[-1] == 3000  # progress reaches the total
        hashes.append(made.content_hash)
    assert hashes[0] == hashes[1]
    shutil.rmtree(tmp_path / "o2o-2" / "cache")
    assert resolve_dataset("hopper-medium").content_hash == hashes[0]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_lean_step_is_gymnasiums_step_bit_for_bit(task: str) -> None:
    """The factory's vectorized step (`_Locomotion`) gives Gymnasium's observations, rewards and
    terminations exactly, through terminations, time limits and resets."""
    env_id, n = TASKS[task], 2
    reference = [gym.make(env_id) for _ in range(n)]
    lean = _Locomotion([gym.make(env_id).unwrapped for _ in range(n)])
    for i in range(n):
        np.testing.assert_array_equal(lean.reset(i, seed=i), reference[i].reset(seed=i)[0])
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(1100):  # past HalfCheetah's 1000-step time limit
        actions = rng.uniform(-1, 1, (n, lean.act_dim)).astype(np.float32)
        obs, rewards, terminated = lean.step(actions, n)
        for i, env in enumerate(reference):
            expected_obs, expected_reward, expected_terminated, truncated, _ = env.step(actions[i])
            np.testing.assert_array_equal(obs[i], expected_obs)
            assert rewards[i] == expected_reward and terminated[i] == expected_terminated
            if expected_terminated or truncated:
                ends += 1
                np.testing.assert_array_equal(lean.reset(i), env.reset()[0])
    assert ends >= n


def test_level_without_policies_says_how_to_train_them(tmp_path) -> None:
    with pytest.raises(FactoryError, match="o2o datasets train-policies walker2d"):
        make_dataset("walker2d-medium", size=100, policy_dir=tmp_path)


def test_names_are_checked() -> None:
    assert split_name("walker2d-medium-replay") == ("walker2d", "medium-replay", None)
    assert split_name("hopper-medium-200k") == ("hopper", "medium", 200_000)
    assert split_name("walker2d-medium-replay-50000") == ("walker2d", "medium-replay", 50_000)
    assert split_name("halfcheetah-expert-1m") == ("halfcheetah", "expert", 1_000_000)
    with pytest.raises(FactoryError, match="unknown level 'medium-0k'"):
        split_name("hopper-medium-0k")
    with pytest.raises(FactoryError, match="its name says 200000 transitions, --size says 100"):
        make_dataset("hopper-medium-200k", size=100)
    with pytest.raises(FactoryError, match="unknown task 'pong'"):
        split_name("pong-medium")
