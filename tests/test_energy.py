"""EDIS's energies and their guidance (`o2o.generators.energy`): the InfoNCE loss on a hand-computed
case, the guidance's masks, scales, clip and sign against the sampler's slope on a model whose
denoiser is exact (a zeroed output layer: the ideal denoiser of N(0, I)), and real contrastive
training on a toy whose online rows sit away from the model's samples. No Ray."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from o2o.generators.diffusion import EDMDiffusion, ResidualMLPDenoiser, TransitionLayout
from o2o.generators.energy import ENERGIES, ENERGY_SCALES, EnergyGuide, EnergyNet, infonce_loss

SMALL = (32, 32)
"""Hidden sizes of every test's energies: the authors' 3×256 would only cost time here."""
LAYOUT = TransitionLayout(obs_dim=2, act_dim=1)
"""Width 7: obs 0-1, action 2, reward 3, next obs 4-5, terminal 6."""
COLUMNS = {"state": [0, 1], "policy": [2], "transition": [4, 5]}
"""Each energy's columns in LAYOUT, written out rather than read from the layout."""
TOY = TransitionLayout(obs_dim=1, act_dim=1)
"""Width 5: obs 0, action 1, reward 2, next obs 3, terminal 4."""
MODES = {"state": (0, 4.0), "policy": (1, -4.0), "transition": (3, 4.0)}
"""Toy positives: N(0, I) rows with this column moved to N(mode, 0.25²); the model samples N(0, I)."""
SAMPLES = 2000
SAMPLE_STEPS = 32
TRAIN_STEPS = 300
TRAIN_LR = 3e-3
"""The authors' 1e-3 is still on its plateau after 300 steps of the toy; 3e-3 converges in them."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def exact_model(dim: int) -> EDMDiffusion:
    """A zeroed output layer: D(x; σ) = c_skip·x = x/(1 + σ²), the ideal denoiser of N(0, I)."""
    torch.manual_seed(1)
    model = EDMDiffusion(ResidualMLPDenoiser(dim, width=16, depth=1, embed_dim=16))
    torch.nn.init.zeros_(model.denoiser.out.weight)
    torch.nn.init.zeros_(model.denoiser.out.bias)
    return model


def small_guide(scales: dict[str, float], seed: int = 2, layout: TransitionLayout = LAYOUT, lr: float = 1e-3) -> EnergyGuide:
    torch.manual_seed(seed)
    return EnergyGuide(layout, scales, hidden_sizes=SMALL, lr=lr)


def energy_gradient(guide: EnergyGuide, name: str, x: torch.Tensor, sigma: float) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(guide.nets[name](x, sigma).sum(), x)[0]


def hand_g(guide: EnergyGuide, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """EDIS's unclipped g = Σ_k scale_k · mask_k ⊙ ∇ₓE_k, from COLUMNS."""
    g = torch.zeros_like(x)
    for name, cols in COLUMNS.items():
        g[:, cols] += guide.scales[name] * energy_gradient(guide, name, x, sigma)[:, cols]
    return g


def toy_positives(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    out = {}
    for name, (col, mode) in MODES.items():
        rows = torch.randn(n, TOY.width, generator=generator)
        rows[:, col] = mode + 0.25 * torch.randn(n, generator=generator)
        out[name] = rows
    return out


@pytest.fixture(scope="module")
def trained() -> dict:
    """Three energies trained 300 steps against the exact N(0, I) model's own samples, then the
    model sampled with and without their guidance (same seed)."""
    model = exact_model(TOY.width)
    g = seeded(0)
    pool = model.sample(4000, num_steps=SAMPLE_STEPS, generator=g)
    guide = small_guide({name: 1.0 for name in ENERGIES}, layout=TOY, lr=TRAIN_LR)
    sigmas = model.sigmas(SAMPLE_STEPS)[:-1]
    for _ in range(TRAIN_STEPS):
        guide.train_step(toy_positives(64, g), pool, sigmas, generator=g)
    # At σ ≫ 4 the noise hides the difference (there the energies must be flat); judge at σ ≤ 0.5.
    low = guide.train_step(toy_positives(256, g), pool, sigmas[sigmas <= 0.5], generator=g)
    plain = model.sample(SAMPLES, num_steps=SAMPLE_STEPS, generator=seeded(3))
    guided = model.sample(SAMPLES, num_steps=SAMPLE_STEPS, generator=seeded(3), guidance=guide.guidance())
    return {"low": low, "plain": plain, "guided": guided}


def test_infonce_loss_is_cross_entropy_of_the_positive_with_logits_minus_energy() -> None:
    positive = torch.tensor([0.5, 1.0], requires_grad=True)
    negatives = torch.tensor([[1.0, 2.0], [0.0, 3.0]], requires_grad=True)
    first = -math.log(math.exp(-0.5) / (math.exp(-0.5) + math.exp(-1.0) + math.exp(-2.0)))
    second = -math.log(math.exp(-1.0) / (math.exp(-1.0) + math.exp(0.0) + math.exp(-3.0)))
    loss = infonce_loss(positive, negatives)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6), "the mean over groups of −log softmax(−E)[positive]"
    assert infonce_loss(positive[:1], negatives[:1]).item() == pytest.approx(first, rel=1e-6)
    loss.backward()
    assert bool((positive.grad > 0).all()), "lowering a positive's energy lowers the loss"
    assert bool((negatives.grad < 0).all()), "raising a negative's energy lowers the loss"


def test_energy_net_is_an_mlp_over_rows_and_c_noise() -> None:
    torch.manual_seed(0)
    net = EnergyNet(7, hidden_sizes=SMALL)
    x = torch.randn(5, 7, generator=seeded(0))
    energies = net(x, 0.3)
    assert energies.shape == (5,), "one scalar energy per row"
    c_noise = torch.full((5, 1), math.log(0.3) / 4)
    torch.testing.assert_close(energies, net.net(torch.cat([x, c_noise], 1)).squeeze(1), msg="c_noise = ln(σ)/4 is the last input")
    torch.testing.assert_close(net(x, torch.full((5,), 0.3)), energies, msg="a number σ is the same σ for every row")
    assert not torch.allclose(net(x, 3.0), energies), "the energy depends on the noise level"
    default = [(m.in_features, m.out_features) for m in EnergyNet(7).net if isinstance(m, torch.nn.Linear)]
    assert default == [(8, 256), (256, 256), (256, 256), (256, 1)], "the authors' 3×256 MLP by default"
    assert sum(isinstance(m, torch.nn.ReLU) for m in EnergyNet(7).net) == 3


def test_train_step_contrasts_each_positive_with_its_negatives_at_one_drawn_sigma() -> None:
    """The step's draws, replayed in their documented order: K pool rows per positive, one σ per
    group from `sigmas`, then the positives' and the negatives' noise."""
    guide = small_guide({"policy": 1.0})
    rows, pool = torch.randn(4, 7, generator=seeded(0)), torch.randn(30, 7, generator=seeded(1))
    sigmas = torch.tensor([0.1, 0.5, 2.0])
    g = seeded(3)
    picked = pool[torch.randint(30, (12,), generator=g)].reshape(4, 3, 7)
    sigma = sigmas[torch.randint(3, (4,), generator=g)]
    noisy_pos = rows + sigma[:, None] * torch.randn(rows.shape, generator=g)
    noisy_neg = picked + sigma[:, None, None] * torch.randn(picked.shape, generator=g)

    def energies() -> tuple[torch.Tensor, torch.Tensor]:
        net = guide.nets["policy"]
        with torch.no_grad():
            return net(noisy_pos, sigma), net(noisy_neg.reshape(12, 7), sigma.repeat_interleave(3)).reshape(4, 3)

    e_pos, e_neg = energies()
    metrics = guide.train_step({"policy": rows}, pool, sigmas, negatives_per_positive=3, generator=seeded(3))
    assert set(metrics) == {"policy_loss", "policy_accuracy"}, "only the active energy is trained"
    assert metrics["policy_loss"] == pytest.approx(infonce_loss(e_pos, e_neg).item(), rel=1e-6)
    assert metrics["policy_accuracy"] == (e_pos[:, None] < e_neg).all(1).float().mean().item()
    assert infonce_loss(*energies()) < infonce_loss(e_pos, e_neg), "the Adam step lowered the loss on these rows"


def test_guidance_acts_only_on_each_energys_columns() -> None:
    x, sigma = torch.randn(16, LAYOUT.width, generator=seeded(0)), 0.7
    for name, cols in COLUMNS.items():
        g = -sigma * small_guide({name: 1.0}).guidance()(x, sigma)
        others = [c for c in range(LAYOUT.width) if c not in cols]
        assert bool((g[:, cols] != 0).any(dim=0).all()), f"the {name} energy guides each of its columns {cols}"
        assert bool((g[:, others] == 0).all()), f"the {name} energy leaves every other column alone"


def test_guidance_is_the_scaled_masked_gradient_and_a_zero_scale_adds_nothing() -> None:
    guide = small_guide({"state": 0.5, "policy": 0.0, "transition": 0.3})
    assert guide.active == ("state", "transition")
    x, sigma = torch.randn(16, LAYOUT.width, generator=seeded(0)), 0.7
    expected = hand_g(guide, x, sigma)
    assert bool((expected.norm(dim=1) < math.sqrt(7) * 10).all()), "this case is below the clip"
    with torch.no_grad():  # as the sampler calls it: gradients are enabled inside
        out = guide.guidance()(x, sigma)
    torch.testing.assert_close(-sigma * out, expected)
    assert bool((out[:, COLUMNS["policy"]] == 0).all()), "a scale of 0 contributes nothing"
    assert not out.requires_grad and not x.requires_grad, "nothing comes back needing a gradient"
    assert all(p.grad is None for p in guide.parameters()), "guidance leaves no gradient on the energies"

    # A scale-0 energy is not trained either.
    policy_before = [p.detach().clone() for p in guide.nets["policy"].parameters()]
    rows = torch.randn(8, LAYOUT.width, generator=seeded(1))
    positives = {name: rows for name in ENERGIES}
    metrics = guide.train_step(positives, torch.randn(80, 7, generator=seeded(2)), torch.tensor([0.5, 1.0]), generator=seeded(3))
    assert set(metrics) == {"state_loss", "state_accuracy", "transition_loss", "transition_accuracy"}
    assert all(torch.equal(a, b) for a, b in zip(policy_before, guide.nets["policy"].parameters())), "the policy energy did not move"


def test_guidance_clips_each_row_to_norm_sqrt_d_times_10() -> None:
    guide = small_guide({"state": 1e6, "transition": 1e6})
    x, sigma = torch.randn(16, LAYOUT.width, generator=seeded(0)), 0.7
    g = -sigma * guide.guidance()(x, sigma)
    torch.testing.assert_close(g.norm(dim=1), torch.full((16,), math.sqrt(7) * 10), msg="every row is clipped to √D·10")
    unclipped = hand_g(guide, x, sigma)
    direction = unclipped / unclipped.norm(dim=1, keepdim=True)
    torch.testing.assert_close(g, direction * math.sqrt(7) * 10, msg="the clip keeps the direction")


def test_guidance_adds_g_to_the_samplers_slope_as_edis_does() -> None:
    """EDIS's step uses (x − D)/σ + g; on the exact N(0, I) model D = x/(1 + σ²)."""
    model = exact_model(LAYOUT.width)
    guide = small_guide(ENERGY_SCALES)
    x = 3 * torch.randn(16, LAYOUT.width, generator=seeded(0))
    for sigma in (0.05, 1.3, 20.0):
        g = hand_g(guide, x, sigma)
        assert bool((g != 0).any()), "a case where the guidance does something"
        expected = (x - x / (1 + sigma**2)) / sigma + g
        torch.testing.assert_close(model._slope(x, sigma, guide.guidance(), None, 1.0), expected)


def test_trained_energies_tell_online_rows_from_samples_and_guide_toward_them(trained: dict) -> None:
    low = trained["low"]
    for name in ENERGIES:
        assert low[f"{name}_accuracy"] > 0.9, f"the {name} energy ranks its positive lowest in most groups ({low[f'{name}_accuracy']:.2f})"
        assert low[f"{name}_loss"] < 0.5, f"the {name} loss fell far below chance, ln 11 ≈ 2.4 ({low[f'{name}_loss']:.2f})"
    plain, guided = trained["plain"], trained["guided"]
    for name, (col, mode) in MODES.items():
        moved = (guided[:, col].mean() - plain[:, col].mean()).item()
        assert moved * math.copysign(1.0, mode) > 1.0, f"{name} guidance moves column {col} toward {mode} (moved {moved:+.2f})"
    # The exact model's columns are independent, so unguided columns are the same draws exactly.
    assert torch.equal(guided[:, [2, 4]], plain[:, [2, 4]]), "reward and terminal columns are not guided"


def test_state_round_trips_nets_and_optimizers_through_a_checkpoint() -> None:
    rows = {name: torch.randn(8, LAYOUT.width, generator=seeded(i)) for i, name in enumerate(ENERGIES)}
    pool, sigmas = torch.randn(100, LAYOUT.width, generator=seeded(5)), torch.tensor([0.1, 0.5, 2.0])
    guide = small_guide(ENERGY_SCALES)
    for step in range(5):  # Adam's moments now matter to the next step
        guide.train_step(rows, pool, sigmas, generator=seeded(10 + step))
    snapshot = guide.get_state()
    state = pickle.loads(pickle.dumps(snapshot))
    restored = small_guide(ENERGY_SCALES, seed=99)
    restored.set_state(state)
    x = torch.randn(6, LAYOUT.width, generator=seeded(6))
    for name in ENERGIES:
        assert torch.equal(restored.nets[name](x, 0.4), guide.nets[name](x, 0.4)), f"the {name} energy is restored"
    assert restored.train_step(rows, pool, sigmas, generator=seeded(7)) == guide.train_step(rows, pool, sigmas, generator=seeded(7))
    for a, b in zip(guide.parameters(), restored.parameters()):
        assert torch.equal(a, b), "the same Adam step from the same moments"
    # Neither side aliases a checkpoint: training the guide it came from or the guide it was loaded
    # into leaves it as it was.
    assert not torch.equal(guide.nets["state"].net[0].weight, state["nets"]["state"]["net.0.weight"]), "both guides trained on"
    weights = [s["nets"]["state"]["net.0.weight"] for s in (snapshot, state)]
    assert torch.equal(*weights), "get_state copies the weights"
    moments = [s["optimizers"]["state"]["state"][0]["exp_avg"] for s in (snapshot, state)]
    assert torch.equal(*moments), "get_state copies Adam's moments, and set_state does not update them in place"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown energies"):
        EnergyGuide(LAYOUT, {"states": 1.0})
    with pytest.raises(ValueError, match="must be >= 0"):
        EnergyGuide(LAYOUT, {"state": -1.0})
    guide = small_guide({"state": 1.0})
    rows, pool = torch.randn(8, 7, generator=seeded(0)), torch.randn(80, 7, generator=seeded(1))
    with pytest.raises(ValueError, match="no positives"):
        guide.train_step({"policy": rows}, pool, torch.tensor([0.5]))
    with pytest.raises(ValueError, match="pool of >= 80 rows, got 79"):
        guide.train_step({"state": rows}, pool[:79], torch.tensor([0.5]))
    with pytest.raises(ValueError, match="must be > 0"):
        guide.train_step({"state": rows}, pool, EDMDiffusion(ResidualMLPDenoiser(7, width=8, depth=1, embed_dim=8)).sigmas(4))
