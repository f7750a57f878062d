"""The transition diffusion model of EDIS and CFDG (`o2o.generators.diffusion`): EDM's equations on
hand-computed cases, the sampler against a model whose exact answer is known (a denoiser with a
zeroed output layer is the ideal denoiser of N(0, I)), and small real models trained on a
two-mode toy distribution in 2-D — unguided, energy-guided and classifier-free guided. No Ray."""

from __future__ import annotations

import math

import pytest
import torch

from o2o.generators.diffusion import (
    EDMDiffusion,
    ResidualMLPDenoiser,
    TransitionLayout,
    TransitionNormalizer,
    train_diffusion,
)

MODE_A = torch.tensor([-2.0, -1.0])
MODE_B = torch.tensor([2.0, 1.0])
SPREAD = 0.3
"""Toy data: an even mixture of N(MODE_A, 0.3²I) and N(MODE_B, 0.3²I)."""
TRAIN_STEPS = 600
TRAIN_LR = 1e-3
"""A small model (width 64, depth 2) learns the toy in ~2 s on one CPU core at this rate."""
SAMPLES = 2000
SAMPLE_STEPS = 32
EXACT_STEPS = 64
"""Against an exact answer: at 32 steps the churned sampler still overshoots the std by ~5%."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def toy_data(n: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of the two-mode toy and each row's mode (0: A, 1: B)."""
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(n, generator=g) < 0.5).long()
    rows = torch.where(labels[:, None] == 0, MODE_A, MODE_B) + SPREAD * torch.randn(n, 2, generator=g)
    return rows, labels


def small_model(num_labels: int = 0, seed: int = 1, layer_norm: bool = False, dim: int = 2) -> EDMDiffusion:
    torch.manual_seed(seed)
    return EDMDiffusion(ResidualMLPDenoiser(dim, width=64, depth=2, embed_dim=64, num_labels=num_labels, layer_norm=layer_norm))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def near(samples: torch.Tensor, mode: torch.Tensor) -> float:
    """Share of samples within 1.0 (> 3 standard deviations of a mode) of `mode`."""
    return ((samples - mode).norm(dim=1) < 1.0).float().mean().item()


@pytest.fixture(scope="module")
def unconditional() -> dict:
    rows, _ = toy_data()
    model, normalizer = small_model(), TransitionNormalizer(2)
    held_out = normalizer.fit(rows).normalize(rows)
    before = model.loss(held_out, generator=seeded(5)).item()
    metrics = train_diffusion(model, normalizer, rows, TRAIN_STEPS, lr=TRAIN_LR, generator=seeded(0))
    after = model.loss(held_out, generator=seeded(5)).item()
    return {"model": model, "normalizer": normalizer, "rows": rows, "metrics": metrics, "before": before, "after": after}


@pytest.fixture(scope="module")
def conditional() -> dict:
    rows, labels = toy_data()
    model, normalizer = small_model(num_labels=2), TransitionNormalizer(2)
    train_diffusion(model, normalizer, rows, TRAIN_STEPS, lr=TRAIN_LR, generator=seeded(0), labels=labels)
    return {"model": model, "normalizer": normalizer}


def test_preconditioning_and_loss_weight_are_edm_table_1() -> None:
    model = small_model()
    sigma = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = model.preconditioning(sigma)
    # σ = 1: c_skip = 1/2, c_out = c_in = 1/√2, c_noise = ln(1)/4 = 0; σ = 2: 1/5, 2/√5, 1/√5, ln(2)/4;
    # σ = 1/2: (1/(1/4 + 1) = 4/5, (1/2)/√(5/4) = 1/√5, 1/√(5/4) = 2/√5, −ln(2)/4).
    r2, r5 = math.sqrt(2), math.sqrt(5)
    torch.testing.assert_close(c_skip, torch.tensor([0.5, 0.2, 0.8], dtype=torch.float64))
    torch.testing.assert_close(c_out, torch.tensor([1 / r2, 2 / r5, 1 / r5], dtype=torch.float64))
    torch.testing.assert_close(c_in, torch.tensor([1 / r2, 1 / r5, 2 / r5], dtype=torch.float64))
    torch.testing.assert_close(c_noise, torch.tensor([0.0, math.log(2) / 4, -math.log(2) / 4], dtype=torch.float64))
    # λ(σ) = (σ² + 1)/σ²: 2, 5/4, 5.
    torch.testing.assert_close(model.loss_weight(sigma), torch.tensor([2.0, 1.25, 5.0], dtype=torch.float64))


def test_denoise_wraps_the_network_as_edm_eq_7() -> None:
    model = small_model()
    x, sigma = torch.randn(5, 2, generator=seeded(0)), torch.tensor([0.01, 0.3, 1.0, 7.0, 80.0])
    c_skip, c_out, c_in, c_noise = model.preconditioning(sigma)
    expected = c_skip[:, None] * x + c_out[:, None] * model.denoiser(c_in[:, None] * x, c_noise)
    torch.testing.assert_close(model.denoise(x, sigma), expected)
    # A number σ is the same σ for every row.
    torch.testing.assert_close(model.denoise(x, 0.3), model.denoise(x, torch.full((5,), 0.3)))


def test_loss_is_the_lambda_weighted_denoising_error_at_lognormal_sigma() -> None:
    model = small_model()
    x0 = torch.randn(8, 2, generator=seeded(0))
    # The loss's draws, in its order: ln σ ~ N(P_mean, P_std²), then n ~ N(0, I).
    g = seeded(3)
    sigma = (-1.2 + 1.2 * torch.randn(8, generator=g)).exp()
    noise = torch.randn(8, 2, generator=g)
    error = (model.denoise(x0 + sigma[:, None] * noise, sigma) - x0).pow(2).mean(1)
    expected = ((sigma**2 + 1) / sigma**2 * error).mean()
    torch.testing.assert_close(model.loss(x0, generator=seeded(3)), expected)


def test_sigmas_follow_edm_eq_5_from_sigma_max_down_to_sigma_min_then_zero() -> None:
    model = small_model()
    sigmas = model.sigmas(18)
    assert sigmas.shape == (19,), "N steps need N + 1 noise levels (the last one 0)"
    assert math.isclose(sigmas[0].item(), 80.0, rel_tol=1e-9), "sampling starts at σ_max"
    assert math.isclose(sigmas[-2].item(), 0.002, rel_tol=1e-9), "the last noisy level is σ_min"
    assert sigmas[-1].item() == 0.0, "the last step lands on clean data"
    assert bool((sigmas[1:] < sigmas[:-1]).all()), "noise levels strictly decrease"
    # Eq. 5 at i = 9 of N = 18, written out.
    mid = (80 ** (1 / 7) + 9 / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert math.isclose(sigmas[9].item(), mid, rel_tol=1e-12), "interior levels are eq. 5's ρ-spaced ones"


def test_layout_pack_unpack_round_trips_and_thresholds_generated_terminals() -> None:
    layout = TransitionLayout(obs_dim=3, act_dim=2)
    assert layout.width == 2 * 3 + 2 + 2 == 10
    g = seeded(0)
    obs, actions, new_obs = torch.randn(4, 3, generator=g), torch.randn(4, 2, generator=g), torch.randn(4, 3, generator=g)
    rewards, terminateds = torch.randn(4, generator=g), torch.tensor([False, True, False, True])
    rows = layout.pack(obs, actions, rewards, new_obs, terminateds)
    assert rows.shape == (4, layout.width)
    assert torch.equal(rows[:, layout.terminal_index], terminateds.float()), "the terminal flag is the last column"
    out = layout.unpack(rows)
    for name, value in (("obs", obs), ("actions", actions), ("rewards", rewards), ("new_obs", new_obs)):
        assert torch.equal(out[name], value), f"{name} comes back exactly"
    assert torch.equal(out["terminateds"], terminateds.float()), "real 0/1 flags come back unchanged"
    # Generated rows carry a continuous flag: SynthER's `> 0.5` rounds it.
    rows[:, -1] = torch.tensor([0.49, 0.51, -0.3, 1.4])
    assert layout.unpack(rows)["terminateds"].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_normalizer_standardizes_each_column_leaves_raw_columns_and_floors_std() -> None:
    g = seeded(0)
    rows = torch.cat([3 + 2 * torch.randn(500, 2, generator=g), torch.full((500, 1), 4.0), (torch.rand(500, 1, generator=g) < 0.1).float()], 1)
    normalizer = TransitionNormalizer(4, raw_dims=[3]).fit(rows)
    z = normalizer.normalize(rows)
    torch.testing.assert_close(z[:, :2].mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z[:, :2].std(0, correction=0), torch.ones(2), atol=1e-5, rtol=0)
    assert torch.equal(z[:, 2], torch.zeros(500)), "a constant column maps to 0 (std floored, no division by 0)"
    assert normalizer.std[2].item() == pytest.approx(1e-6), "the floor is min_std"
    assert torch.equal(z[:, 3], rows[:, 3]), "a raw column (the terminal flag) is left as it is"
    torch.testing.assert_close(normalizer.unnormalize(z), rows)  # unnormalize inverts normalize
    restored = TransitionNormalizer(4)
    restored.load_state_dict(normalizer.state_dict())
    assert torch.equal(restored.normalize(rows), z), "mean, std and the raw mask are all in the state"


def test_sampler_recovers_the_standard_normal_from_its_exact_denoiser() -> None:
    """A zeroed output layer gives D(x; σ) = c_skip·x = x/(1 + σ²), the exact posterior mean
    E[x₀ | x] for x₀ ~ N(0, I): both samplers must return N(0, I)."""
    model = small_model(dim=3)
    torch.nn.init.zeros_(model.denoiser.out.weight)
    torch.nn.init.zeros_(model.denoiser.out.bias)
    for churn in (80.0, 0.0):
        model.s_churn = churn
        x = model.sample(4000, num_steps=EXACT_STEPS, generator=seeded(0))
        assert x.abs().mean(0).max() < 1.0, "samples are data-scale, not σ_max-scale"
        torch.testing.assert_close(x.mean(0), torch.zeros(3), atol=0.06, rtol=0)
        torch.testing.assert_close(x.std(0), torch.ones(3), atol=0.06, rtol=0)


def test_guidance_is_added_to_the_score() -> None:
    """Tilting N(0, I) by exp(c·x) gives N(c, I); its diffused score at σ is −(x − c)/(1 + σ²),
    the untilted score plus c/(1 + σ²). Passing that difference as `guidance` must therefore
    sample N(c, I) — a wrong sign or a missing σ factor would not."""
    model = small_model(dim=3)
    torch.nn.init.zeros_(model.denoiser.out.weight)
    torch.nn.init.zeros_(model.denoiser.out.bias)
    c = torch.tensor([1.5, -1.0, 0.0])
    for churn in (80.0, 0.0):
        model.s_churn = churn
        x = model.sample(4000, num_steps=EXACT_STEPS, generator=seeded(0), guidance=lambda x, sigma: c / (1 + sigma**2))
        torch.testing.assert_close(x.mean(0), c, atol=0.06, rtol=0)
        torch.testing.assert_close(x.std(0), torch.ones(3), atol=0.06, rtol=0)


def test_classifier_free_guidance_mixes_conditional_and_null_denoisers() -> None:
    model = small_model(num_labels=2, layer_norm=True)
    x, sigma = torch.randn(6, 2, generator=seeded(0)), torch.full((6,), 0.7)
    label = torch.tensor([0, 1, 0, 1, 1, 0])
    null = torch.full((6,), 2)
    d_c, d_null = model.denoise(x, sigma, label), model.denoise(x, sigma, null)
    assert not torch.allclose(d_c, d_null), "the label changes the output"
    torch.testing.assert_close(model.denoise(x, sigma, label, guidance_weight=2.5), d_null + 2.5 * (d_c - d_null))
    torch.testing.assert_close(model.denoise(x, sigma, label, guidance_weight=0.0), d_null), "w = 0 is unconditional"
    assert torch.equal(model.denoise(x, sigma), d_null), "no label means ∅"
    torch.testing.assert_close(model.denoise(x, sigma, 1), model.denoise(x, sigma, torch.ones(6, dtype=torch.long)))
    with pytest.raises(ValueError, match="guidance_weight 2.0 needs a label"):
        model.denoise(x, sigma, guidance_weight=2.0)


def test_label_dropout_replaces_labels_by_null_inside_the_loss() -> None:
    model = small_model(num_labels=2)
    x0, label = torch.randn(64, 2, generator=seeded(0)), torch.randint(2, (64,), generator=seeded(1))
    at_null = model.loss(x0, generator=seeded(2))
    model.label_dropout = 1.0
    assert model.loss(x0, label, generator=seeded(2)) == at_null, "dropout 1 trains every row at ∅"
    model.label_dropout = 0.0
    assert model.loss(x0, label, generator=seeded(2)) != at_null, "dropout 0 keeps the labels"


def test_training_lowers_the_loss_and_samples_reproduce_both_modes(unconditional: dict) -> None:
    assert unconditional["after"] < 0.75 * unconditional["before"], (
        f"held-out EDM loss {unconditional['before']:.3f} → {unconditional['after']:.3f}: training must lower it clearly"
    )
    assert unconditional["metrics"]["loss"] < unconditional["before"]
    model, normalizer, rows = unconditional["model"], unconditional["normalizer"], unconditional["rows"]
    samples = normalizer.unnormalize(model.sample(SAMPLES, num_steps=SAMPLE_STEPS, generator=seeded(3)))
    # Data: mean ≈ (0, 0), std ≈ (2.0, 1.04); the tolerances are ~3 standard errors plus model error.
    torch.testing.assert_close(samples.mean(0), rows.mean(0), atol=0.15, rtol=0)
    torch.testing.assert_close(samples.std(0), rows.std(0), rtol=0.1, atol=0)
    a, b = near(samples, MODE_A), near(samples, MODE_B)
    assert 0.4 < a < 0.6 and 0.4 < b < 0.6, f"both modes get about half the mass (A {a:.2f}, B {b:.2f})"
    assert a + b > 0.9, f"samples sit on the modes, not between them ({a + b:.2f} near one)"


def test_energy_guidance_moves_samples_toward_the_guided_mode(unconditional: dict) -> None:
    """An energy's gradient taken by autograd inside `guidance` (as EDIS does): log of a Gaussian
    bump at mode B, widened by the noise level so it stays a score at every σ."""
    model, normalizer = unconditional["model"], unconditional["normalizer"]
    target = normalizer.normalize(MODE_B)

    def toward_b(x: torch.Tensor, sigma: float) -> torch.Tensor:
        x = x.detach().requires_grad_()
        log_bump = -0.5 * (x - target).pow(2).sum() / (1 + sigma**2)
        return torch.autograd.grad(log_bump, x)[0]

    plain = normalizer.unnormalize(model.sample(SAMPLES, num_steps=SAMPLE_STEPS, generator=seeded(3)))
    guided = normalizer.unnormalize(model.sample(SAMPLES, num_steps=SAMPLE_STEPS, generator=seeded(3), guidance=toward_b))
    assert guided[:, 0].mean() > plain[:, 0].mean() + 1.0, "the guided mean moves toward mode B"
    assert near(guided, MODE_B) > 0.8 > 0.6 > near(plain, MODE_B), "most guided samples land on mode B"


def test_classifier_free_guidance_samples_the_labelled_mode(conditional: dict) -> None:
    model, normalizer = conditional["model"], conditional["normalizer"]

    def draw(**kwargs) -> torch.Tensor:
        return normalizer.unnormalize(model.sample(SAMPLES, num_steps=SAMPLE_STEPS, generator=seeded(3), **kwargs))

    for weight in (1.0, 2.0):
        on_a, on_b = draw(label=0, guidance_weight=weight), draw(label=1, guidance_weight=weight)
        assert near(on_a, MODE_A) > 0.9 and near(on_a, MODE_B) < 0.02, f"label 0 samples mode A (w = {weight})"
        assert near(on_b, MODE_B) > 0.9 and near(on_b, MODE_A) < 0.02, f"label 1 samples mode B (w = {weight})"
    both = draw()
    assert near(both, MODE_A) > 0.25 and near(both, MODE_B) > 0.25, "∅ samples both modes"


def test_sampling_and_training_repeat_exactly_under_a_seeded_generator(unconditional: dict) -> None:
    model = unconditional["model"]
    first = model.sample(256, num_steps=8, generator=seeded(7))
    assert torch.equal(first, model.sample(256, num_steps=8, generator=seeded(7))), "same seed, same rows"
    assert not torch.equal(first, model.sample(256, num_steps=8, generator=seeded(8))), "another seed, other rows"
    rows, _ = toy_data(512)
    runs = []
    for _ in range(2):
        fresh = small_model(seed=4)
        train_diffusion(fresh, TransitionNormalizer(2), rows, 20, batch_size=64, generator=seeded(0))
        runs.append(torch.cat([p.flatten() for p in fresh.parameters()]))
    assert torch.equal(runs[0], runs[1]), "a seeded retrain from the same weights repeats exactly"


def test_state_dicts_restore_a_model_that_samples_identically(unconditional: dict) -> None:
    model, normalizer = unconditional["model"], unconditional["normalizer"]
    restored, restored_norm = small_model(seed=99), TransitionNormalizer(2)
    restored.load_state_dict(model.state_dict())
    restored_norm.load_state_dict(normalizer.state_dict())
    expected = normalizer.unnormalize(model.sample(256, num_steps=8, generator=seeded(5)))
    got = restored_norm.unnormalize(restored.sample(256, num_steps=8, generator=seeded(5)))
    assert torch.equal(got, expected), "weights, Fourier frequencies and normalizer statistics all travel in the state"
