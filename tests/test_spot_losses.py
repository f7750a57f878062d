"""SPOT's equations on hand-computed cases (the VAE's KL and reconstruction terms, the −ELBO and
importance-weighted density estimates, λ's cooling schedule, the actor loss), that the density
term adds λ times its own gradient to the actor's in a real update, what its phases do
to the learner (the VAE trains alone first and is frozen after; the online start resets the
actor's and critics' Adam state), what its module gives EnvRunners, and — on real Ray — the
three phases in order with a checkpoint that resumes the λ schedule, and no evaluation of the
untrained actor during the VAE phase."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from o2o.algorithms.spot import SPOTConfig
from o2o.algorithms.spot.learner import (
    SPOTLearner,
    cooled_support_weight,
    gaussian_kl,
    importance_weighted_nll,
    negative_elbo,
    reconstruction_error,
    spot_actor_loss,
)
from o2o.algorithms.spot.module import SPOTModule
from o2o.algorithms.td3bc.learner import q_normalizer
from o2o.platform.engine import Phase
from o2o.platform.replay import Sampling

from helpers import learner_on_random_transitions, moved, parameters_of, on_dataset, random_transitions

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def test_gaussian_kl_is_zero_at_the_prior_and_averages_latent_dims() -> None:
    assert gaussian_kl(torch.zeros(1, 3), torch.ones(1, 3)).item() == pytest.approx(0.0)
    # Per dim 1 + log σ² − μ² − σ²: (μ 1, σ 1) → −1; (μ 0, σ² e) → 2 − e. KL = −½·mean = (e − 1)/4.
    kl = gaussian_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, math.exp(0.5)]]))
    assert kl.item() == pytest.approx((math.e - 1) / 4)


def test_reconstruction_error_averages_latent_samples_and_action_dims() -> None:
    decoded = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])  # one pair, two latent samples
    actions = torch.tensor([[0.0, 1.0]])
    # Squared errors (0, 1) and (1, 0): 2 over 4 terms, as the authors' mean over (S, A).
    assert reconstruction_error(decoded, actions).item() == pytest.approx(0.5)


def test_negative_elbo_is_recon_plus_beta_kl() -> None:
    assert negative_elbo(torch.tensor([0.5]), torch.tensor([0.4]), beta=0.5).item() == pytest.approx(0.7)


def test_negative_elbo_is_a_scaled_shifted_minus_elbo_with_decoder_std_sqrt_beta_over_4() -> None:
    # The density term the actor minimises must rank actions as −ELBO does: with latent 2|A| it is
    # β/(2|A|)·(−ELBO − c), c = |A|·log(σ_dec·√(2π)), the ELBO of a N(D(s, z), β/4) decoder.
    torch.manual_seed(0)
    act_dim, beta = 3, 0.5
    actions, decoded = torch.rand(4, act_dim), torch.rand(4, 1, act_dim)
    mean, std = torch.randn(4, 2 * act_dim), torch.rand(4, 2 * act_dim) + 0.5
    sigma = math.sqrt(beta / 4)
    log_p = torch.distributions.Normal(decoded.squeeze(1), sigma).log_prob(actions).sum(-1)
    kl_sum = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, std), torch.distributions.Normal(0.0, 1.0)
    ).sum(-1)
    minus_elbo = kl_sum - log_p
    c = act_dim * (math.log(sigma) + HALF_LOG_2PI)
    ours = negative_elbo(reconstruction_error(decoded, actions), gaussian_kl(mean, std), beta)
    torch.testing.assert_close(ours, beta / (2 * act_dim) * (minus_elbo - c))


def test_importance_weighted_nll_on_one_and_two_latents() -> None:
    beta = 4.0  # decoder std √(β/4) = 1
    mean, std = torch.zeros(1, 1), torch.ones(1, 1)  # q(z|s,a) is the prior, so log p(z) − log q(z) = 0
    actions = torch.zeros(1, 1)
    one = importance_weighted_nll(actions, torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), mean, std, beta)
    assert one.item() == pytest.approx(HALF_LOG_2PI), "−log N(0; 0, 1)"
    # Two latents decoding to 0 and 1: log w = −½log2π and −½ − ½log2π; −log of their mean.
    two = importance_weighted_nll(
        actions, torch.tensor([[[0.0], [1.0]]]), torch.tensor([[[0.0], [1.0]]]), mean, std, beta
    )
    assert two.item() == pytest.approx(-math.log((1 + math.exp(-0.5)) / 2) + HALF_LOG_2PI)


@pytest.mark.parametrize(
    ("progress", "expected"),
    [(0.0, 0.5), (0.5, 0.25), (0.8, 0.1), (1.0, 0.1), (3.0, 0.1)],
)
def test_support_weight_cools_linearly_to_its_floor_and_stays(progress: float, expected: float) -> None:
    # λ 0.5, floor 0.2: 0.5·max(0.2, 1 − t/T); the floor is reached at 80% of T.
    assert cooled_support_weight(0.5, 0.2, progress) == pytest.approx(expected)


def test_spot_actor_loss_on_two_numbers_with_a_detached_q_scale() -> None:
    q_pi = torch.tensor([1.0, -3.0], requires_grad=True)
    neg_log_behavior = torch.tensor([0.2, 0.6], requires_grad=True)
    scale = q_normalizer(q_pi, 1.0)  # 1 / mean|Q| = 0.5
    loss = spot_actor_loss(q_pi, scale, neg_log_behavior, support_weight=0.5)
    # −0.5·mean(1, −3) + 0.5·mean(0.2, 0.6) = 0.5 + 0.2.
    assert loss.item() == pytest.approx(0.7)
    loss.backward()
    torch.testing.assert_close(q_pi.grad, torch.tensor([-0.25, -0.25]), msg="1/mean|Q| is not differentiated")
    torch.testing.assert_close(neg_log_behavior.grad, torch.tensor([0.25, 0.25]))


def test_defaults_follow_the_authors_and_cool_lambda_online_only() -> None:
    config = SPOTConfig()
    assert (config.vae_hidden_sizes, config.vae_latent_dim, config.vae_beta) == ([750, 750], None, 0.5)
    assert (config.vae_pretrain_updates, config.vae_lr, config.support_weight_floor) == (100_000, 1e-3, 0.2)
    assert config.normalize_observations and config.normalize_q and config.reset_optimizers_online
    assert not config.for_phase("offline").cool_support_weight and config.for_phase("online").cool_support_weight


@pytest.mark.parametrize("field", ["actor_dropout", "vae_hidden_sizes", "vae_latent_dim"])
def test_fields_read_at_module_build_cannot_be_phase_overrides(field: str) -> None:
    value = {"actor_dropout": 0.0, "vae_hidden_sizes": [8], "vae_latent_dim": 2}[field]
    config = SPOTConfig().environment("Hopper-v5").o2o(phase_overrides={"online": {field: value}})
    config.vae_pretrain_updates = 0
    with pytest.raises(ValueError, match=field):
        config.validate()


def spot_learner(**training: object) -> SPOTLearner:
    return learner_on_random_transitions(SPOTConfig().o2o(online_env_steps=100).training(**training))


def test_vae_trains_alone_first_and_is_frozen_after() -> None:
    learner = spot_learner()
    net = learner.net
    vae, actor, critic = parameters_of(net.vae), parameters_of(net.actor), parameters_of(net.critic)
    learner.on_phase_start(Phase("vae_pretraining", 4, "updates"))
    metrics = learner.run_updates(4, Sampling("offline"))
    assert set(metrics) == {"vae_loss", "reconstruction_loss", "kl_loss"}
    assert moved(vae, net.vae) and not moved(actor, net.actor) and not moved(critic, net.critic)

    vae = parameters_of(net.vae)
    learner.on_phase_start(Phase("offline", 4, "updates"))
    learner.run_updates(4, Sampling("offline"))
    assert moved(actor, net.actor) and moved(critic, net.critic)
    assert not moved(vae, net.vae), "the actor's density term must not train the VAE"


def decoder_ignores_latents_(vae: torch.nn.Module, obs_dim: int) -> None:
    """Zero the decoder's weights on z: D(s, z) = D(s), so the −ELBO density estimate draws no
    noise and two evaluations of it agree exactly (its gradient in a still flows through the
    reconstruction term and the encoder's KL)."""
    with torch.no_grad():
        vae.decoder[0].weight[:, obs_dim:] = 0.0


def test_the_density_term_adds_lambda_times_its_gradient_to_the_actors() -> None:
    weight = 0.5
    # No actor dropout, so π(s) is the same in every forward; one policy update per update.
    learners = [
        spot_learner(support_weight=w, actor_dropout=0.0, policy_delay=1, vae_hidden_sizes=[64, 64])
        for w in (weight, 0.0)
    ]
    learners[1].net.load_state_dict(learners[0].net.state_dict())
    obs_dim = learners[0].net.observation_space.shape[0]
    for learner in learners:
        decoder_ignores_latents_(learner.net.vae, obs_dim)
        learner.on_phase_start(Phase("offline", 1, "updates"))
    batch = learners[0].replay.sample(32, Sampling("offline"))
    beta = SPOTConfig().vae_beta

    # ∇_θ E_s[−log π̂_β(π_θ(s)|s)], the β-weighted −ELBO at the actor's actions, computed apart
    net, obs = learners[0].net, batch["obs"]
    decoded, _, mean, std = net.vae(obs, net.actor(obs))
    density = negative_elbo(reconstruction_error(decoded, net.actor(obs)), gaussian_kl(mean, std), beta).mean()
    expected = torch.autograd.grad(density, list(net.actor.parameters()))
    assert max(g.abs().max().item() for g in expected) > 1e-3, "the density term has a gradient to add"

    grads = []
    for learner in learners:
        learner.update_step(batch)
        grads.append([p.grad.clone() for p in learner.net.actor.parameters()])
    # the Q term's gradient is the same in both (same networks, batch and 1/mean|Q|), so the
    # difference is the density term's: λ·∇E[−log π̂_β], toward actions the behaviour model finds likelier
    for with_term, without, density_grad in zip(*grads, expected):
        torch.testing.assert_close(with_term - without, weight * density_grad, rtol=1e-4, atol=1e-7)


def test_online_start_resets_actor_and_critic_adam_state_only_and_cools_lambda() -> None:
    learner = spot_learner(support_weight=0.5, actor_lr=1e-4)
    net, optimizer = learner.net, learner.optimizer
    learner.on_phase_start(Phase("vae_pretraining", 2, "updates"))
    learner.run_updates(2, Sampling("offline"))
    learner.on_phase_start(Phase("offline", 4, "updates"))
    learner.run_updates(4, Sampling("offline"))
    assert learner.current_support_weight() == 0.5, "offline λ is constant"
    critic_state = optimizer.state[next(net.critic.parameters())]
    assert int(critic_state["step"]) == 4 and critic_state["exp_avg"].abs().sum() > 0
    vae_state = {k: v.clone() for k, v in optimizer.state[next(net.vae.parameters())].items()}

    learner.on_phase_start(Phase("online", 100, "env_steps"))
    for p in [*net.critic.parameters(), *net.actor.parameters()]:
        assert p not in optimizer.state, "a fresh Adam has no moments or step count"
    for key, value in optimizer.state[next(net.vae.parameters())].items():
        assert torch.equal(value, vae_state[key]), "the VAE's Adam state is not the fine-tuning's business"
    assert {g["name"]: g["lr"] for g in optimizer.param_groups} == {"critic": 3e-4, "actor": 1e-4, "vae": 1e-3}

    rows = random_transitions(60)
    learner.add_online({k: getattr(rows, k) for k in ("obs", "actions", "rewards", "new_obs", "terminateds")})
    # 60 of 100 online steps: λ·max(0.2, 1 − 0.6) = 0.5·0.4.
    assert learner.current_support_weight() == pytest.approx(0.2)
    learner.run_updates(2, Sampling("union"))
    assert int(optimizer.state[next(net.critic.parameters())]["step"]) == 2, "steps count from the online start"


def test_online_start_keeps_the_optimizer_state_when_asked() -> None:
    learner = spot_learner(reset_optimizers_online=False)
    learner.on_phase_start(Phase("offline", 2, "updates"))
    learner.run_updates(2, Sampling("offline"))
    learner.on_phase_start(Phase("online", 100, "env_steps"))
    assert int(learner.optimizer.state[next(learner.net.critic.parameters())]["step"]) == 2


def test_envrunner_module_holds_the_actor_only_and_acts_without_dropout() -> None:
    config = SPOTConfig().training(actor_init_w=1e-3, critic_init_w=3e-3)
    spaces = dict(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
    )
    runner = SPOTModule(**spaces, inference_only=True, model_config=config.network_config())
    assert {k.split(".")[0] for k in runner.state_dict()} == {"actor", "obs_normalizer"}
    assert runner.actor.net[-1].weight.abs().max() <= 1e-3, "the actor's output layer is initialised in ±1e-3"
    batch = {Columns.OBS: torch.randn(64, 3)}
    first, second = (runner.forward_inference(batch)[Columns.ACTIONS] for _ in range(2))
    assert torch.equal(first, second), "acting is deterministic: dropout only acts while training"

    learner = SPOTModule(**spaces, inference_only=False, model_config=config.network_config())
    assert learner.critic.out.weight.abs().max() <= 3e-3
    assert torch.equal(learner.critic_target.out.weight, learner.critic.out.weight), "targets copy the new init"
    assert learner.vae.latent_dim == 4, "latent 2·|A|"


@pytest.mark.usefixtures("ray_session")
def test_phases_run_vae_then_offline_then_online_and_resume_the_schedule(hopper_random, tmp_path) -> None:  # noqa: ANN001
    config = (
        on_dataset(
            SPOTConfig(),
            hopper_random,
            offline_updates=50,
            online_env_steps=100,
            updates_per_iteration=50,
            env_steps_per_iteration=50,
        )
        .training(
            train_batch_size_per_learner=32, vae_pretrain_updates=50, vae_hidden_sizes=[32, 32], support_weight=0.5
        )
        .evaluation(evaluation_interval=0)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        results = [algo.train()["o2o"] for _ in range(3)]
        assert "vae_pretraining/vae_loss" in results[0] and "offline/critic_loss" not in results[0]
        assert "offline/neg_log_behavior" in results[1]
        assert results[2]["counters/env_steps"] == 50 and algo.current_phase.name == "online"
        algo.save_to_path(tmp_path / "ckpt")
    finally:
        algo.stop()
    restored = type(algo).from_checkpoint(tmp_path / "ckpt")
    try:
        # 50 of 100 online steps restored from the buffer: λ = 0.5·max(0.2, 0.5).
        assert restored.learner_group._learner.current_support_weight() == pytest.approx(0.25)
    finally:
        restored.stop()


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("interval", [1, 100], ids=["rllib-interval", "phase-end"])
def test_the_vae_phase_is_not_evaluated_and_the_offline_phase_is(hopper_random, interval) -> None:  # noqa: ANN001
    config = (
        on_dataset(SPOTConfig(), hopper_random, offline_updates=20, online_env_steps=0, updates_per_iteration=20)
        .training(train_batch_size_per_learner=32, vae_pretrain_updates=20, vae_hidden_sizes=[32, 32])
        .evaluation(evaluation_interval=interval, evaluation_duration=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        vae, offline = algo.train()["o2o"], algo.train()["o2o"]
        # the VAE phase leaves the actor as initialised: a score there would be noise, and the
        # report's curve would start at it
        assert not [k for k in vae if k.startswith("eval/")], vae
        assert np.isfinite(offline["eval/normalized_score"]), "the offline phase's end is scored"
        # a user's own call outside a training iteration still evaluates
        assert np.isfinite(algo.evaluate()["env_runners"]["episode_return_mean"])
    finally:
        algo.stop()
