"""A straightforward reimplementation of the reference code's training step, the baseline of `train_speed.py`.

It runs on a `DEMVAEForGeneration`'s own weights but computes as the authors' code does: every batch padded to
40 tokens, no packing (the encoder reads the padding), logits for every position, log-softmax then NLL, and the
prior terms written out from the components' natural parameters. On a batch without padding its loss equals ours
(tests/test_train_speed_baseline.py checks it), so the timing compares implementations of the same objective.
"""

import math

import torch
import torch.nn.functional as F


def pad_to(sentences: list[list[int]], length: int, pad_token_id: int) -> torch.Tensor:
    """Cut or pad every sentence to exactly `length` tokens, as the reference data loader does."""
    batch = torch.full((len(sentences), length), pad_token_id, dtype=torch.long)
    for row, ids in enumerate(sentences):
        ids = ids[:length]
        batch[row, : len(ids)] = torch.as_tensor(ids)
    return batch


def reference_loss(model, input_ids: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """The DGM-VAE training loss of one padded batch, computed the reference code's way."""
    config, prior = model.config, model.prior
    batch, groups, components = input_ids.shape[0], config.num_groups, config.num_components

    embedded = model.encoder.dropout(model.encoder.embedding(input_ids))
    _, forward_last = model.encoder.forward_rnn(embedded)  # a bidirectional GRU over the padded batch
    _, backward_last = model.encoder.backward_rnn(embedded.flip(1))
    encoded = torch.cat([forward_last[0], backward_last[0]], dim=-1)
    mu, logvar = model.posterior.mean(encoded), model.posterior.logvar(encoded)
    qc_logits = model.posterior.component_logits(encoded).view(batch, groups, components)
    log_qc = F.log_softmax(qc_logits, dim=-1)
    qc = log_qc.exp()
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    decoder = model.decoder
    dec_inputs, labels = input_ids[:, :-1], input_ids[:, 1:]
    h0 = decoder.latent_to_hidden(z).unsqueeze(0)
    emb = decoder.dropout(decoder.embedding(dec_inputs))
    emb = torch.cat([emb, z.unsqueeze(1).repeat(1, emb.size(1), 1)], dim=-1)
    outputs, _ = decoder.rnn(emb, h0)
    logits = model.lm_head(decoder.dropout(outputs))
    log_probs = F.log_softmax(logits, dim=-1)
    nll = F.nll_loss(
        log_probs.view(-1, log_probs.size(-1)), labels.reshape(-1), ignore_index=config.pad_token_id, reduction="sum"
    ) / batch

    # prior terms from natural parameters: eta1 = m / s^2, eta2 = -1 / (2 s^2),
    # A = -eta1^2 / (4 eta2) - log(-2 eta2) / 2
    var_c = torch.exp(prior.log_variances)
    eta1, eta2 = prior.means / var_c, -1.0 / (2.0 * var_c)
    eta1_bar = torch.einsum("bgk,gkd->bgd", qc, eta1)
    eta2_bar = torch.einsum("bgk,gkd->bgd", qc, eta2)
    var_bar, mu_q, logvar_q = -1.0 / (2.0 * eta2_bar), mu.view(batch, groups, -1), logvar.view(batch, groups, -1)
    mean_bar = eta1_bar * var_bar
    zkl = 0.5 * torch.sum(torch.log(var_bar) - logvar_q + (torch.exp(logvar_q) + (mu_q - mean_bar) ** 2) / var_bar - 1)
    zkl = zkl / batch

    def log_partition(e1, e2):
        return -e1.pow(2) / (4.0 * e2) - 0.5 * torch.log(-2.0 * e2)

    expected_a = torch.sum(qc * log_partition(eta1, eta2).sum(-1))
    a_of_expected = torch.sum(log_partition(eta1_bar, eta2_bar))
    dispersion = (expected_a - a_of_expected) / batch

    avg_qc = qc.mean(0)
    agg_ckl = torch.sum(avg_qc * (torch.log(avg_qc + 1e-15) + math.log(components)))
    mi = torch.sum(-avg_qc * torch.log(avg_qc + 1e-15)) - torch.sum(-qc * log_qc) / batch
    c_term = agg_ckl + (0.0 if config.use_mutual_information else mi)
    return nll + kl_weight * (c_term + zkl + (1.0 - config.dispersion_weight) * dispersion)
