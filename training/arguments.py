"""How a run trains: `TrainingArguments`, the reference protocol's settings (spec section 5) with their checks, and
which of them a resumed run may change."""

from dataclasses import dataclass

from .checks import check_number
from .precision import resolve_mixed_precision

SELECTION_METRICS = {"elbo": +1, "loss": -1}  # validation ELBO is maximized, the training objective minimized
# settings a resumed run may change: none of them moves the trajectory
FREE_ON_RESUME = ("output_dir", "max_steps", "checkpoint_every", "keep_checkpoints", "logging_steps", "report_to",
                  "resume", "overwrite", "learning_curve_every", "learning_curve_until")
POSITIVE_INTEGERS = ("batch_size", "max_steps", "eval_every", "keep_checkpoints", "lr_decay_patience",
                     "gradient_accumulation_steps", "eval_batch_size", "logging_steps")


@dataclass
class TrainingArguments:
    """How to train; the defaults are the reference protocol (spec section 5).

    Args:
        output_dir: Folder for the best model (save_pretrained layout) and checkpoints/.
        batch_size: Sentences per optimizer step, split over processes and accumulation steps.
        learning_rate: Adam's initial learning rate.
        max_grad_norm: Clip the global gradient norm to this value.
        max_steps: Optimizer steps at most (the reference: 50 "epochs" of 2,000 steps).
        eval_every: Steps between validations (the reference "epoch").
        learning_curve_every: Steps between the points of a learning curve: validations that only log (the terms and
            I(x; c) per group, to output_dir/learning_curve.jsonl) and leave model selection, decay, stopping and the
            trajectory alone (default: none).
        learning_curve_until: Last step of the learning curve (default: the whole run).
        checkpoint_every: Steps between checkpoints (default: at every validation).
        keep_checkpoints: How many of the newest checkpoints to keep.
        lr_decay: Factor applied to the learning rate after lr_decay_patience validations without improvement.
        lr_decay_patience: Validations without improvement before each learning-rate decay.
        early_stopping_patience: Stop after this many validations without improvement (0: never).
        selection_metric: Validation metric that picks the best model: elbo (maximized) or loss (the training
            objective at full KL weight, minimized; the reference DailyDialog runs).
        gradient_accumulation_steps: Micro-batches per optimizer step on each process (the same step as one
            batch, to rounding, with dropout 0).
        mixed_precision: auto (bf16 where the CPU or GPU has bf16 arithmetic, detected at run time, else float32),
            no (float32), bf16 autocast, or fp16 autocast with loss scaling (GPUs only). Weights stay float32.
        seed: Seed of the weights, the data order, the sampling noise and the dropout masks.
        eval_batch_size: Sentences per validation batch.
        logging_steps: Steps between progress-bar and tracker updates.
        report_to: auto (TensorBoard when installed), tensorboard or none.
        resume: Continue from the newest intact checkpoint in output_dir/checkpoints, on the same trajectory (the
            settings must be the run's).
        overwrite: Start afresh in an output_dir that holds an earlier run: its checkpoints and model are removed.
        freeze_step: A dialog model's two stages: the step at which stage 1 (the response VAE) ends, after a
            validation, its best weights reloaded and frozen, and stage 2 (context encoder, policy, decoder)
            starts, with a new optimizer; stage 1 also ends when the VAE stops early (the reference's
            `--freeze_step`).
        kl_annealing_start: Step of the KL-annealing schedule at the run's first step: 0 warms up from the start,
            None (in Python; --no-kl-annealing on the command line) trains at full weight. With --init-from the
            default continues where the base model's run left the schedule (full weight for a model without a
            training record), so fine-tuning does not switch the KL terms off again; 0 restarts the warm-up. A
            resumed run keeps the value it started with.
    """

    output_dir: str = "demvae-output"
    batch_size: int = 30
    learning_rate: float = 1e-3
    max_grad_norm: float = 0.5
    max_steps: int = 100_000
    eval_every: int = 2_000
    learning_curve_every: int | None = None
    learning_curve_until: int | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    lr_decay: float = 0.8
    lr_decay_patience: int = 3
    early_stopping_patience: int = 10
    selection_metric: str = "elbo"
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "auto"
    seed: int = 0
    eval_batch_size: int = 100
    logging_steps: int = 20
    report_to: str = "auto"
    resume: bool = False
    overwrite: bool = False
    kl_annealing_start: int | None = 0
    freeze_step: int | None = None

    def __post_init__(self):
        for name in POSITIVE_INTEGERS:
            check_number(name, getattr(self, name), integer=True, minimum=1)
        for name in ("checkpoint_every", "learning_curve_every", "learning_curve_until", "freeze_step"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), integer=True, minimum=1)
        check_number("early_stopping_patience", self.early_stopping_patience, integer=True, minimum=0)
        check_number("seed", self.seed, integer=True, minimum=0, maximum=2**32 - 1)  # NumPy's seed range
        check_number("learning_rate", self.learning_rate, above=0)
        check_number("max_grad_norm", self.max_grad_norm, above=0)
        check_number("lr_decay", self.lr_decay, above=0, maximum=1)
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: --resume continues the run in output_dir, "
                             "--overwrite replaces it.")
        import torch  # here, not at the top: the command line reads this module before it loads torch

        # an unknown value, or fp16 without a GPU, is refused here, before any work
        resolve_mixed_precision(self.mixed_precision, "cuda" if torch.cuda.is_available() else "cpu")
        if self.selection_metric not in SELECTION_METRICS:
            raise ValueError(
                f"selection_metric must be one of {tuple(SELECTION_METRICS)}, got {self.selection_metric!r}."
            )
        if self.report_to not in ("auto", "tensorboard", "none"):
            raise ValueError(f"report_to must be 'auto', 'tensorboard' or 'none', got {self.report_to!r}.")
        start = self.kl_annealing_start
        if start is not None and (isinstance(start, bool) or not isinstance(start, int) or start < 0):
            raise ValueError(f"kl_annealing_start must be None or a step >= 0, got {start!r}.")


def adam(parameters, *, learning_rate: float):
    """The spec's Adam, fused: one kernel per parameter instead of a pass per operation (about 3x faster on CPU,
    where the update of the two 10k x 512 embeddings is a tenth of a step); the same update up to rounding."""
    import torch  # here: the command line reads this module before it loads torch

    return torch.optim.Adam(parameters, lr=learning_rate, fused=True)


__all__ = ["FREE_ON_RESUME", "SELECTION_METRICS", "TrainingArguments", "adam"]
