"""The torch training backend: the same loop as the numba one, on a GPU.

``training.train_batch`` picks it when a config's device is ``cuda`` (or
``auto`` with a GPU present). Parameters, gradients and AdamW state stay on the
device; only the per-instance losses (I floats) come back each step, for the
NaN check and the loss history. The loss and gradients come from
``kernels.loss_and_grads_torch`` (chunked over points, dead features skipped),
which the tests hold to the same autograd reference as the CPU kernel.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import ADAM_G_TINY, ADAM_M_TINY, ADAM_V_TINY, TrainConfig
from .kernels import BatchData, loss_and_grads_torch


class TorchBackend:
    def __init__(self, P, imp: np.ndarray, wd: np.ndarray, cfg: TrainConfig, device: str):
        self.dev = torch.device(device)
        self.tag = f"torch/{self.dev.type}"  # what trains (training.train_batch's saved states)
        self.I, self.m, self.n, self.tied = P.I, P.m, P.n, P.tied
        self.cfg = cfg
        self.flat = torch.tensor(P.flat, device=self.dev)
        self.Mo = torch.zeros_like(self.flat)
        self.V = torch.zeros_like(self.flat)
        self.G = torch.zeros_like(self.flat)
        self.last_good = self.flat.clone()
        self.imp = torch.tensor(imp, device=self.dev)
        self.wd = torch.tensor(wd, device=self.dev, dtype=torch.float32)

    def _views(self, t: torch.Tensor):
        m, n = self.m, self.n
        W = t[:, : m * n].view(self.I, m, n)
        b = t[:, m * n: m * n + n]
        U = None if self.tied else t[:, m * n + n:].view(self.I, m, n)
        return W, b, U

    def loss_and_grads(self, batch: BatchData) -> np.ndarray:
        W, b, U = self._views(self.flat)
        loss, _, g = loss_and_grads_torch(W, b, batch, U, self.imp)
        gW, gb, gU = self._views(self.G)
        gW.copy_(g.W)
        gb.copy_(g.b)
        if gU is not None:
            gU.copy_(g.U)
        return loss.cpu().numpy()

    @torch.no_grad()
    def adamw(self, live: np.ndarray, lr: float, step: int) -> None:
        c = self.cfg
        mask = torch.tensor(live, device=self.dev)[:, None]
        bc1 = 1.0 - c.beta1 ** step
        bc2s = (1.0 - c.beta2 ** step) ** 0.5
        Mo = torch.lerp(self.Mo, self.G, 1.0 - c.beta1)
        # the numba backend's flush-to-zero of the moments (config.ADAM_M_TINY: subnormals are slow on CPUs),
        # "zero if below", so that NaNs are kept
        Gv = torch.where(self.G.abs() < ADAM_G_TINY, 0.0, self.G)
        V = self.V * c.beta2 + (1.0 - c.beta2) * Gv * Gv
        Mo = torch.where(Mo.abs() < ADAM_M_TINY, 0.0, Mo)
        V = torch.where(V < ADAM_V_TINY, 0.0, V)
        P = self.flat * (1.0 - lr * self.wd)[:, None] - (lr / bc1) * Mo / (V.sqrt() / bc2s + c.adam_eps)
        self.Mo = torch.where(mask, Mo, self.Mo)
        self.V = torch.where(mask, V, self.V)
        self.flat = torch.where(mask, P, self.flat)

    def keep_good(self, live: np.ndarray) -> None:
        idx = torch.tensor(np.flatnonzero(live), device=self.dev)
        self.last_good[idx] = self.flat[idx]

    def restore_good(self, mask: np.ndarray) -> None:
        idx = torch.tensor(np.flatnonzero(mask), device=self.dev)
        self.flat[idx] = self.last_good[idx]

    def finite(self) -> np.ndarray:
        return torch.isfinite(self.flat).all(1).cpu().numpy()

    def params(self) -> np.ndarray:
        return self.flat.cpu().numpy()

    def reset(self) -> None:
        """Nothing to forget: the torch step keeps no state from one step to the next (see training.RESET_EVERY)."""

    def state(self) -> dict[str, np.ndarray]:
        return {"flat": self.params(), "Mo": self.Mo.cpu().numpy(), "V": self.V.cpu().numpy(),
                "last_good": self.last_good.cpu().numpy()}

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        for name in ("flat", "Mo", "V", "last_good"):
            setattr(self, name, torch.tensor(np.asarray(st[name], np.float32), device=self.dev))
