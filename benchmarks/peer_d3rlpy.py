"""d3rlpy's side of `peer_learning.py`: one seed of d3rlpy 2.8.1's IQL, offline then online.

Runs in the peer venv (`benchmarks/.peer-venv`, d3rlpy with its own Gymnasium 1.0.0), never
imports o2o, and is started by `peer_learning.py`, which exports the dataset it reads (o2o's
canonical table as .npz, with the return range o2o measured) and collects the JSON it writes.

What it runs, with the settings `peer_learning.py` matches on o2o's side:

- `IQLConfig`: expectile 0.7, weight_temp 3.0, max_weight 100, lr 3e-4 for actor and critic
  (constant: no scheduler), batch 256, γ 0.99, τ 0.005, 2 critics, 256×2 ReLU encoders,
  `ReturnBasedRewardScaler(multiplier=1000)` with the dataset's return max/min;
- `fit` for the offline updates on `ReplayBuffer(InfiniteBuffer(), episodes=...)`, then
  `fit_online` on the same buffer (online rows join the dataset; minibatches are uniform over
  the union), one update per env step, no explorer (actions sampled from the Gaussian policy),
  no random steps;
- evaluation with `peer_eval.evaluate` and `algo.predict` (tanh of the mean) after each phase,
  outside the timed `fit` / `fit_online` calls.

    benchmarks/.peer-venv/bin/python benchmarks/peer_d3rlpy.py --data D.npz --env Hopper-v5 \\
        --seed 0 --offline-updates 1000 --online-steps 500 --episodes 2 --out result.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peer_eval import TrainingClock, episode_seeds, evaluate, run_record

REWARD_MULTIPLIER = 1000.0
"""IQL's locomotion reward scale: rewards × 1000 / (max − min episode return)."""
HIDDEN = [256, 256]


def episodes_from(data: dict[str, np.ndarray]) -> list:
    """d3rlpy episodes holding exactly the table's transitions.

    d3rlpy stores states, not (s, s') pairs: an episode of T rows that did not terminate yields
    T − 1 transitions. An episode cut by a time limit (or by the end of the data) therefore gets
    its last next state appended as an extra row with a zero action and reward, which no
    transition reads as (s, a, r), so its T transitions are the table's T rows.
    """
    from d3rlpy.dataset import Episode

    order = np.lexsort((data["t"], data["eps_id"]))
    eps = data["eps_id"][order]
    starts = np.flatnonzero(np.r_[True, eps[1:] != eps[:-1]])
    ends = np.r_[starts[1:], len(order)]
    episodes = []
    for start, end in zip(starts, ends):
        rows = order[start:end]
        obs, actions, rewards = data["obs"][rows], data["actions"][rows], data["rewards"][rows, None]
        terminated = bool(data["terminateds"][rows[-1]])
        if not terminated:
            obs = np.concatenate([obs, data["new_obs"][rows[-1:]]])
            actions = np.concatenate([actions, np.zeros_like(actions[:1])])
            rewards = np.concatenate([rewards, np.zeros_like(rewards[:1])])
        episodes.append(Episode(observations=obs, actions=actions, rewards=rewards, terminated=terminated))
    return episodes


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train one seed offline then online; evaluate after each phase; return the measurements."""
    import d3rlpy
    import gymnasium as gym
    from d3rlpy.dataset import InfiniteBuffer, ReplayBuffer
    from d3rlpy.logging import NoopAdapterFactory
    from d3rlpy.models.encoders import VectorEncoderFactory
    from d3rlpy.preprocessing import ReturnBasedRewardScaler

    torch.set_num_threads(1)
    d3rlpy.seed(args.seed)
    with np.load(args.data) as archive:
        data = dict(archive)  # an NpzFile reads an array from disk again at every access
    episodes = episodes_from(data)
    buffer = ReplayBuffer(InfiniteBuffer(), episodes=episodes)
    if buffer.transition_count != len(data["rewards"]):
        raise SystemExit(f"d3rlpy's buffer holds {buffer.transition_count} transitions, the dataset {len(data['rewards'])}")
    returns = np.array([float(np.sum(e.rewards, dtype=np.float64)) for e in episodes])
    return_max, return_min = float(data["return_max"]), float(data["return_min"])
    if not np.allclose([returns.max(), returns.min()], [return_max, return_min], rtol=1e-6, atol=1e-3):
        raise SystemExit(f"episode returns span [{returns.min()}, {returns.max()}] here, [{return_min}, {return_max}] in o2o")

    encoder = VectorEncoderFactory(hidden_units=HIDDEN, activation="relu")
    algo = d3rlpy.algos.IQLConfig(
        actor_learning_rate=3e-4,
        critic_learning_rate=3e-4,
        batch_size=256,
        gamma=0.99,
        tau=0.005,
        n_critics=2,
        expectile=0.7,
        weight_temp=3.0,
        max_weight=100.0,
        actor_encoder_factory=encoder,
        critic_encoder_factory=encoder,
        value_encoder_factory=encoder,
        reward_scaler=ReturnBasedRewardScaler(return_max=return_max, return_min=return_min, multiplier=REWARD_MULTIPLIER),
    ).create(device=False)
    algo.build_with_dataset(buffer)  # the networks, built before the clock starts (as o2o's)

    seeds = episode_seeds(args.seed, args.episodes)

    def policy(obs: np.ndarray) -> np.ndarray:
        return algo.predict(obs[None])[0]

    quiet = {"logger_adapter": NoopAdapterFactory(), "show_progress": False}
    offline, online = TrainingClock(), TrainingClock()
    with offline:
        algo.fit(buffer, n_steps=args.offline_updates, n_steps_per_epoch=args.offline_updates, **quiet)
    offline_returns = evaluate(args.env, policy, seeds)

    final_returns = None
    if args.online_steps > 0:
        env = gym.make(args.env)
        env.reset(seed=args.seed)  # fit_online's own reset() then continues this seeded stream
        with online:
            algo.fit_online(
                env,
                buffer,
                n_steps=args.online_steps,
                n_steps_per_epoch=args.online_steps,
                update_interval=1,
                n_updates=1,
                update_start_step=0,
                random_steps=0,
                **quiet,
            )
        final_returns = evaluate(args.env, policy, seeds)
    online_rows = buffer.transition_count - len(data["rewards"])
    packages = ("d3rlpy", "torch", "gymnasium", "mujoco", "numpy")
    return run_record("d3rlpy", args.seed, seeds, offline_returns, final_returns, offline, online, online_rows, packages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help=".npz export of the canonical table (peer_learning.py writes it)")
    parser.add_argument("--env", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--offline-updates", type=int, required=True)
    parser.add_argument("--online-steps", type=int, required=True)
    parser.add_argument("--episodes", type=int, required=True)
    parser.add_argument("--out", required=True, help="write the result JSON here")
    args = parser.parse_args()
    Path(args.out).write_text(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
