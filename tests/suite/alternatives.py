"""Correct implementations written differently from the reference: every checker must accept them all."""

import einops
import torch as t
import torch.nn.functional as F


def forward_with_matmul(self, features):
    # [..., inst, feats] @ [inst, feats, d_hidden] broadcasts the instance axis as a batch of matrices
    hidden = (features.unsqueeze(-2) @ self.W.transpose(-1, -2)).squeeze(-2)
    return F.relu((hidden.unsqueeze(-2) @ self.W).squeeze(-2) + self.b_final)


def forward_with_gram_matrix(self, features):
    gram = einops.einsum(self.W, self.W, "inst d_hidden f_in, inst d_hidden f_out -> inst f_in f_out")
    return t.clamp(
        einops.einsum(features, gram, "... inst f_in, inst f_in f_out -> ... inst f_out") + self.b_final, min=0
    )


def generate_batch_two_draws(self, batch_size):
    # the paper's notebook: one uniform for the mask, another for the magnitude
    shape = (batch_size, *self.feature_probability.shape)
    feat = t.rand(shape, device=self.W.device)
    return t.where(t.rand(shape, device=self.W.device) <= self.feature_probability, feat, 0.0)


def generate_batch_bernoulli(self, batch_size):
    p = self.feature_probability.expand(batch_size, *self.feature_probability.shape)
    return t.bernoulli(p) * t.rand_like(p)


def generate_batch_magnitudes_first_float64(self, batch_size):
    shape = (batch_size, *self.feature_probability.shape)
    magnitudes = t.rand(shape, dtype=t.float64)
    mask = t.rand(shape, dtype=t.float64) < self.feature_probability.double()
    return (magnitudes * mask).float()


def loss_with_mean_and_sum(self, out, batch, per_instance=False):
    loss = (self.importance * (out - batch).pow(2)).mean(dim=(0, 2))
    return loss if per_instance else loss.sum()


def loss_with_mse_weights(self, out, batch, per_instance=False):
    weighted = F.mse_loss(out * self.importance.sqrt(), batch * self.importance.sqrt(), reduction="none")
    loss = weighted.sum(dim=(0, 2)) / (batch.shape[0] * batch.shape[2])
    return loss if per_instance else loss.sum()


def stats_with_loops(W):
    n_inst, _, n_features = W.shape
    norms = t.zeros(n_inst, n_features)
    interference = t.zeros(n_inst, n_features)
    for i in range(n_inst):
        for f in range(n_features):
            norms[i, f] = W[i, :, f].norm()
            direction = W[i, :, f] / (norms[i, f] + 1e-10)
            overlaps = direction @ W[i]
            interference[i, f] = (overlaps**2).sum() - overlaps[f] ** 2
    return norms, interference


def stats_with_gram(W, eps=1e-6):
    gram = W.transpose(1, 2) @ W
    norms = gram.diagonal(dim1=1, dim2=2).sqrt()
    overlaps = gram / norms.clamp(min=eps).unsqueeze(-1)
    mask = 1 - t.eye(W.shape[-1])
    return norms, (overlaps**2 * mask).sum(-1)


ALTERNATIVES = {
    "tms.forward": [forward_with_matmul, forward_with_gram_matrix],
    "tms.generate_batch": [generate_batch_two_draws, generate_batch_bernoulli, generate_batch_magnitudes_first_float64],
    "tms.calculate_loss": [loss_with_mean_and_sum, loss_with_mse_weights],
    "tms.superposition_stats": [stats_with_loops, stats_with_gram],
}
