"""OPT's losses: the meta-adaptation objective that pre-trains Q_on, κ's ramp, and the actor's
value (1 − κ)·Q_off + κ·Q_on during fine-tuning.

Online Pre-Training — Shin, Kim, Jung, Hong, Yoon, Jang, Kim, Chae, Sung, Lee, Lim. "Online
Pre-Training for Offline-to-Online Reinforcement Learning", ICML 2025. The released code is not
reachable here; what each piece does follows the two public ports METHODS.md records.

`online_pretraining` trains only Q_on, on one dataset minibatch (the phase's rule) and one
minibatch of the rows `online_collection` gathered, by the meta-adaptation objective
(`meta_adaptation_loss`): learn from the offline data in a way whose one-step adaptation fits the
online data. Targets come from Q_on's own target critics at the frozen offline actor's smoothed
action (TD3's target), and Q_on's target is Polyak-averaged after every update.

Fine-tuning (`online`): the base's update — Q_off to its TD3 target, the actor on its loss with
Q read as (1 − κ)·Q_off + κ·Q_on through the base's `actor_q` hook — with Q_on's TD3 loss on
the same minibatch added to the base's losses, its target moving with the base's delayed target
updates. Where this departs from the ports: Q_on's loss shares the base's backward, so the actor
reads Q_on (as it reads Q_off in the base's one backward) from before the critics' step (the
ports update both critics, then the actor).

Both updates run once per seed in a K-seed trial (`O2OLearner.seed_losses`): the inner step is
`torch.func.grad`, which `vmap` batches and the outer backward differentiates through.
"""

from __future__ import annotations

from typing import Any

import torch

from o2o.algorithms.opt.config import PRETRAINING
from o2o.algorithms.td3.learner import clipped_double_q_target, critic_loss
from o2o.platform.engine import O2OLearner
from o2o.platform.networks import soft_update_
from o2o.platform.replay import Sampling

Minibatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""States, actions and TD targets of one minibatch."""


def meta_adaptation_loss(
    critic: torch.nn.Module, offline: Minibatch, online: Minibatch, inner_lr: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """OPT's online pre-training objective for Q_θ, on (states, actions, TD targets) of an
    offline and an online minibatch:

        L_off(θ) + w · L_on(θ − η ∇_θ L_off(θ)),   w = sg[min(L_off, L_on) / L_on],

    L the twin critics' squared TD error. The inner step is plain SGD and differentiable, so
    the outer gradient flows through it (second order); w scales the online term down to the
    offline one's size whenever it is larger (detached: it scales, it is not optimized). Returns
    the objective, L_off(θ) and L_on(θ') (the last two detached)."""
    params = dict(critic.named_parameters())

    def offline_loss(at: dict[str, torch.Tensor]) -> torch.Tensor:
        return critic_loss(torch.func.functional_call(critic, at, offline[:2]), offline[2])

    grads, loss_off = torch.func.grad_and_value(offline_loss)(params)
    adapted = {name: p - inner_lr * grads[name] for name, p in params.items()}
    loss_on = critic_loss(torch.func.functional_call(critic, adapted, online[:2]), online[2])
    weight = (torch.minimum(loss_off, loss_on) / loss_on).detach()
    return loss_off + weight * loss_on, loss_off.detach(), loss_on.detach()


def kappa(start: float, end: float, progress: float) -> float:
    """κ after `progress` = t / T of its ramp: start + (end − start)·min(t/T, 1)."""
    return start + (end - start) * min(progress, 1.0)


def mixed_q(q_offline: torch.Tensor, q_online: torch.Tensor, weight: float) -> torch.Tensor:
    """The value the fine-tuned actor ascends: (1 − κ)·Q_off + κ·Q_on."""
    return (1.0 - weight) * q_offline + weight * q_online


class OPTLearner(O2OLearner):
    """Mixin over a TD3-family learner (TD3+BC, SPOT): the base's update in the base's phases
    and in fine-tuning (with the actor reading the κ-mix and Q_on's TD loss beside the base's),
    Q_on's meta-adaptation update in `online_pretraining`."""

    def parameter_groups(self, net: torch.nn.Module) -> list[dict[str, Any]]:
        """The base's groups and Q_on's."""
        return [*super().parameter_groups(net), {"params": list(net.critic_online.parameters()), "name": "critic_online"}]

    def learning_rates(self) -> dict[str, float]:
        """The base's rates; Q_on at `lr`, the critics' rate (the outer Adam step)."""
        return {**super().learning_rates(), "critic_online": self.hp.lr}

    @property
    def fine_tuning(self) -> bool:
        """Whether this is the online phase, where the actor reads the κ-mix and Q_on trains by TD."""
        return self.phase is not None and self.phase.name == "online"

    def current_kappa(self) -> float:
        """κ now: its ramp over the fine-tuning phase's env steps (the learner's clock, restored
        with checkpoints)."""
        hp = self.hp
        return kappa(hp.kappa_start, hp.kappa_end, self.phase_env_steps / hp.kappa_env_steps)

    def actor_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Fine-tuning: (1 − κ)·Q_off,1 + κ·Q_on,1 at the actor's actions, both read detached;
        the base's Q_off,1 before it."""
        q_offline = super().actor_q(obs, actions)
        if not self.fine_tuning:
            return q_offline
        q_online = self.net.critic_online(obs, actions, detach_params=True)[0]
        return mixed_q(q_offline, q_online, self.current_kappa())

    def online_critic_target(self, net: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """TD3's target for Q_on: r + γ(1 − d)·min_i Q̄_on,i(s', π̄(s') + clipped noise)."""
        hp = self.hp
        with torch.no_grad():
            next_actions = net.actor_target.noisy(batch["new_obs"], hp.target_noise, hp.target_noise_clip)
            next_q = self.target_min(net.critic_online_target(batch["new_obs"], next_actions))
            return clipped_double_q_target(batch["rewards"], batch["terminateds"], next_q, hp.gamma)

    def losses(
        self, net: torch.nn.Module, batch: dict[str, torch.Tensor], delayed: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The base's losses; in fine-tuning with Q_on's TD3 loss on the same minibatch."""
        loss, metrics = super().losses(net, batch, delayed)
        if not self.fine_tuning:
            return loss, metrics
        q = net.critic_online(batch["obs"], batch["actions"])
        online_loss = critic_loss(q, self.online_critic_target(net, batch))
        return loss + online_loss, {**metrics, "online_critic_loss": online_loss.detach(), "online_q_mean": q.detach().mean()}

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        assert self.phase is not None, "on_phase_start() names the phase before any update"
        if self.phase.name == PRETRAINING:
            return self.pretraining_step(batch)
        if not self.fine_tuning:
            return super().update_step(batch)
        weight = self.current_kappa()
        due = self.actor_update_due()  # the base's rhythm, read before its update counts
        metrics = super().update_step(batch)
        if due:
            soft_update_(self.net.critic_online_target.parameters(), self.net.critic_online.parameters(), self.hp.tau)
        metrics["kappa"] = torch.tensor(weight)
        return metrics

    def pretraining_losses(
        self, net: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The meta-adaptation objective of Q_on on the dataset minibatch `batch` and the online
        minibatch `batch["online"]`, and its metrics."""
        online = batch["online"]
        objective, loss_off, loss_on = meta_adaptation_loss(
            net.critic_online,
            (batch["obs"], batch["actions"], self.online_critic_target(net, batch)),
            (online["obs"], online["actions"], self.online_critic_target(net, online)),
            self.hp.meta_lr,
        )
        return objective, {"meta_objective": objective.detach(), "offline_td_loss": loss_off, "online_td_loss": loss_on}

    def pretraining_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One meta-adaptation update of Q_on on the phase's dataset minibatch and a minibatch of
        the online rows (each seed's from its own lane), then Q_on's Polyak target."""
        assert self.replay is not None
        samplings = [Sampling("online")] * self.num_seeds
        online = self.replay.gather(self.minibatch_indices(self.hp.train_batch_size_per_learner, samplings))
        objective, metrics = self.seed_losses(self.pretraining_losses, {**batch, "online": online})
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer.step()
        soft_update_(self.net.critic_online_target.parameters(), self.net.critic_online.parameters(), self.hp.tau)
        return metrics
