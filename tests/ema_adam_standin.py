"""A CPU stand-in for `sat.ops.FusedEmaAdam` (a CUDA kernel) with its state layout, for testing the EMA checkpoint.

Per parameter the state holds `step`, `exp_avg`, `exp_avg_sq` (the AdamW moments, computed here by torch AdamW,
the update rule the fused kernel implements) and `shadow`: the EMA of the weights, started from the weights
before the first update and moved after each update with SAT's decay schedule min(ema_decay, (1 + n) / (10 + n))
for the n-th step. The class keeps SAT's name, which is what the checkpoint code recognises.
"""

import torch


class FusedEmaAdam(torch.optim.AdamW):
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 ema_decay: float = 0.9999):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.ema_decay = ema_decay
        self.num_updates = 0

    @torch.no_grad()
    def step(self, closure=None):
        stepped = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        first = {p: p.detach().clone() for p in stepped if "shadow" not in self.state[p]}  # weights before the update
        loss = super().step(closure)
        self.num_updates += 1
        decay = min(self.ema_decay, (1 + self.num_updates) / (10 + self.num_updates))
        for p in stepped:
            state = self.state[p]
            if p in first:
                state["shadow"] = first[p]
            state["shadow"].mul_(decay).add_(p, alpha=1 - decay)
        return loss
