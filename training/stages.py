"""The stages of a run. A sentence model trains in one. A dialog model trains in two, in one run (the reference's
`freeze_step`): stage 1 its response VAE alone, as a sentence model is trained; stage 2, with the VAE and its prior
frozen, the context encoder, the policy and the response decoder (`DEMVAEForDialogGeneration.forward(stage=2)`).

Each stage has its own model selection, as in the reference: stage 1 on the sentence model's `selection_metric`,
stage 2 on nll + policy_loss (the consistency term is a regulariser, not a measure of the model).
"""

from dataclasses import dataclass

from modeling_demvae.data import PaddingCollator
from modeling_demvae.dialog_data import DialogCollator

from .arguments import SELECTION_METRICS, adam
from .checkpoints import load_exported_weights

VAE_TERMS = ("loss", "nll", "zkl", "dispersion", "agg_ckl", "mi", "elbo")
CONTEXT_SIDE_TERMS = ("loss", "nll", "policy_loss", "consistency")
STAGE_TWO_SELECTION = ("nll", "policy_loss")  # the sum, minimized


@dataclass(frozen=True)
class Stage:
    """What a stage trains and how it is measured: `number` (1, or 2 for a dialog model's context side), the terms
    its forward returns and the trainer logs, and the keywords that forward needs beside the batch."""

    number: int
    logged_terms: tuple[str, ...]
    forward_inputs: dict


def is_dialog_model(model) -> bool:
    """Whether `model` trains in two stages: a dialog model, with its response VAE."""
    return hasattr(model, "response_vae")


def response_vae(model):
    """The sentence DEM-VAE of a model: a dialog model's response VAE, or the sentence model itself."""
    return model.response_vae if is_dialog_model(model) else model


def stage(number: int) -> Stage:
    if number == 1:
        return Stage(1, VAE_TERMS, {})
    return Stage(2, CONTEXT_SIDE_TERMS, {"stage": 2})


def trained_module(model, number: int):
    """What stage `number` trains: in stage 1 the sentence model (a dialog model's response VAE), in stage 2 the
    dialog model with its response VAE frozen, which this freezes."""
    if number == 1:
        return response_vae(model)
    model.freeze_response_vae()
    return model


def selection_value(number: int, metrics: dict[str, float], selection_metric: str) -> float:
    """A validation's value for model selection, larger is better."""
    if number == 2:
        return -sum(metrics[name] for name in STAGE_TWO_SELECTION)
    return SELECTION_METRICS[selection_metric] * metrics[selection_metric]


def selection_name(number: int, selection_metric: str) -> str:
    return " + ".join(STAGE_TWO_SELECTION) if number == 2 else selection_metric


def check_freeze_step(two_stages: bool, freeze_step: int | None, max_steps: int) -> None:
    if two_stages and not (freeze_step is not None and freeze_step < max_steps):
        raise ValueError(f"a dialog model trains in two stages: freeze_step (the end of stage 1) must be a step "
                         f"below max_steps={max_steps}, got {freeze_step}.")
    if not two_stages and freeze_step is not None:
        raise ValueError("freeze_step ends the first of a dialog model's two stages; a sentence model trains in "
                         "one: leave it None.")


class TwoStageTraining:
    """`DEMVAETrainer`'s stages: what trains, with which optimizer and batches, and the switch. The trainer holds
    `args`, `accelerator`, `state`, `full_model` (the model exported and checkpointed), `labelled` and `output_dir`;
    this sets `stage`, `model` and `optimizer` (the prepared module and optimizer of the stage), `vae_config`,
    `collate` and `logged_terms`."""

    def _enter_stage(self, number: int) -> None:
        """Train stage `number` from here: its module (stage 2 freezes the response VAE), a new optimizer over the
        weights that learn, and its batches (stage 1 reads the responses alone)."""
        self.stage = stage(number)
        module = trained_module(self.full_model, number)
        optimizer = adam([weight for weight in module.parameters() if weight.requires_grad],
                         learning_rate=self.args.learning_rate)
        self.model, self.optimizer = self.accelerator.prepare(module, optimizer)
        self.vae_config = response_vae(self.full_model).config
        pad = self.config.pad_token_id
        self.collate = (DialogCollator(pad_token_id=pad) if number == 2 else
                        PaddingCollator(pad_token_id=pad, extra_columns=("attribute_labels",) * self.labelled))
        self.logged_terms = self.stage.logged_terms + ("attribute_loss",) * self.labelled

    def _stage_one_over(self) -> bool:
        """Whether a dialog model's stage 1 ends here: `freeze_step` reached, or the response VAE stopped early."""
        state = self.state
        return (is_dialog_model(self.full_model) and state.stage == 1
                and (state.step >= self.args.freeze_step or state.stopped_early))

    def _switch_to_stage_two(self, progress) -> None:
        """The reference's switch: reload the best stage-1 weights, freeze the response VAE and its prior, and
        rebuild the optimizer over the context side; stage 2 selects its own best model from scratch."""
        state = self.state
        load_exported_weights(self.full_model, self.output_dir)
        state.stage, state.stage_switch_step = 2, state.step
        state.best_metric, state.validations_without_improvement, state.stopped_early = None, 0, False
        self._enter_stage(2)
        progress.write(f"step {state.step}: stage 2 from the best stage-1 model (step {state.best_step}): the "
                       "response VAE frozen, the context encoder, policy and decoder training")


__all__ = ["Stage", "TwoStageTraining", "check_freeze_step", "is_dialog_model", "response_vae", "selection_name",
           "selection_value", "stage", "trained_module"]
