"""The training loop of the reference runs, on Accelerate: one script for a CPU, a GPU, or `accelerate launch`.

Adam, global gradient-norm clipping and KL annealing at every step; every `eval_every` steps (the spec's
"epoch") a validation pass on a fixed random stream, the best model exported with `save_pretrained`, the
learning rate multiplied by `lr_decay` after `lr_decay_patience` validations without improvement, and early
stopping after `early_stopping_patience` of them; learning-curve points in between (`learning_curve_every`) only
log. Checkpoints hold everything the trajectory depends on (weights, optimizer, random states, data position) and
the settings it depends on, so a resumed run ends where an uninterrupted one would, and --resume refuses a run with
other settings. Ctrl-C finishes the step, writes a checkpoint and stops (`TrainingInterrupted`).

`batch_size` is the number of sentences per optimizer step, whatever the hardware: it is split evenly over the
processes and the gradient-accumulation micro-batches, and the step is the same whatever the split. The batch
statistic of the loss (q_bar(c), the batch mean of q(c|x) in agg_ckl and mi) is taken over the whole batch by an
encoder-only pass without gradients, and each sentence's sampling noise is its row of the whole batch's noise,
drawn on every process from a generator seeded by the seed and the step. Dropout masks are the one thing that
depends on the split. Datasets with an "attribute_labels" column (`data.with_attribute_labels`) train the supervised
attributes too; their term is a per-sentence mean like the others, so it needs no batch statistic.

A dialog model (datasets with a "context_ids" column, `dialog_data.tokenize_dialogs`) trains in two stages
(`stages`): its response VAE until `freeze_step` or the VAE's early stopping, then, from the best stage-1 weights
with the VAE frozen and a new optimizer over the rest, its context side. The stage and the step of the switch are
in every checkpoint.
"""

import json
import math
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, is_tensorboard_available, set_seed
from tqdm.auto import tqdm

from modeling_demvae.arrow_rows import ColumnRows, column_array
from modeling_demvae.data import LengthBucketBatchSampler

from .arguments import FREE_ON_RESUME, TrainingArguments, adam
from .checkpoints import (
    CheckpointError,
    export_atomically,
    latest_checkpoint,
    list_checkpoints,
    newest_usable_checkpoint,
    remove_atomically,
    remove_leftovers,
    restore_random_states,
    save_checkpoint,
)
from .heap import release_freed_memory
from .learning_curve import append_point, curve_point, trim_curve
from .model_folder import RUN_SUMMARY, model_files
from .precision import resolve_mixed_precision
from .runs import (
    RunClock,
    check_output_dir,
    contexts_record,
    ctrl_c_between_steps,
    ids_record,
    output_lock,
    run_settings,
    setting_defaults,
    setting_differences,
)
from .stages import TwoStageTraining, check_freeze_step, is_dialog_model, response_vae, selection_name, selection_value

NOISE, DROPOUT, VALIDATION_NOISE = range(3)  # the random streams seeded by (seed, stream, position)
SENTENCE_KEYS = ("input_ids", "attention_mask", "labels")  # a micro-batch's, trimmed to its longest sentence


@dataclass
class TrainingState:
    """Where the run is: saved in every checkpoint next to the weights, optimizer and random states."""

    step: int = 0
    data_epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int = 0
    validations_without_improvement: int = 0
    stopped_early: bool = False
    kl_annealing_start: int | None = 0  # of the run's schedule, kept here so that --resume cannot change it
    stage: int = 1  # a dialog model's stage 2: its context side, the response VAE frozen
    stage_switch_step: int | None = None  # the step stage 2 started at

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for item in fields(self):  # a checkpoint from before a field existed keeps its default
            setattr(self, item.name, state.get(item.name, getattr(self, item.name)))


def stream_seed(*keys: int) -> int:
    """A seed mixed from non-negative integers (the run's seed, a stream, a step): nearby keys, unrelated streams."""
    return int(np.random.SeedSequence(keys).generate_state(1, np.uint64)[0])


class TrainingDiverged(ValueError):
    """The loss or the weights became NaN or infinite; the last good checkpoint and exported model are kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped the run after a step, with a checkpoint written to resume from."""


class DEMVAETrainer(TwoStageTraining):
    """Trains a `DEMVAEForGeneration` on tokenized "train" and "validation" datasets (columns "input_ids"), or a
    `DEMVAEForDialogGeneration` on tokenized dialogs (also "context_ids"), in two stages.

    `origin` goes into the run summary beside the exported model: the base model of a fine-tuning run.
    """

    def __init__(self, model, tokenizer, train_dataset, eval_dataset, args: TrainingArguments, *, accelerator=None,
                 data_sources: dict | None = None, origin: dict | None = None):
        self.args, self.tokenizer, self.data_sources = args, tokenizer, data_sources or {}
        self.origin = dict(origin or {})
        self.output_dir = Path(args.output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        if args.report_to == "tensorboard" and not is_tensorboard_available():
            raise ValueError("report_to='tensorboard' needs TensorBoard: pip install tensorboard (or use none).")
        tensorboard = args.report_to != "none" and is_tensorboard_available()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.accelerator = accelerator or Accelerator(
            mixed_precision=resolve_mixed_precision(args.mixed_precision, device),
            cpu=device == "cpu",
            log_with="tensorboard" if tensorboard else None,
            project_dir=str(self.output_dir),
        )
        processes = self.accelerator.num_processes
        if args.batch_size % (processes * args.gradient_accumulation_steps):
            raise ValueError(f"batch size {args.batch_size} must split evenly over {processes} process(es) x "
                             f"{args.gradient_accumulation_steps} accumulation step(s).")
        self.config, self.full_model = model.config, model
        two_stages = is_dialog_model(model)
        check_freeze_step(two_stages, args.freeze_step, args.max_steps)
        self._set_training_data(train_dataset, two_stages)
        self.eval_columns = self._feature_columns(eval_dataset, two_stages)
        self.train_ids, self.eval_ids = self.train_columns["input_ids"], self.eval_columns["input_ids"]
        if self.train_columns.keys() != self.eval_columns.keys():
            raise ValueError("attribute_labels must be in both the training and the validation data, or in neither.")
        self.labelled = "attribute_labels" in self.train_columns
        self.eval_batches = list(LengthBucketBatchSampler(
            column_array(eval_dataset, "length"), args.eval_batch_size, shuffle=False,
            num_shards=processes, shard_index=self.accelerator.process_index,
        ))
        self.state = TrainingState(kl_annealing_start=args.kl_annealing_start)
        self._enter_stage(1)
        self.run_settings = run_settings(self.config, args, self.accelerator.num_processes, self.train_ids,
                                         self.eval_ids, tokenizer, free=FREE_ON_RESUME)
        if self.labelled:  # which labels a semi-supervised run hides is part of its trajectory
            self.run_settings["data"]["attribute_labels"] = ids_record(self.train_columns["attribute_labels"])
        if two_stages:
            for name, columns in (("train_contexts", self.train_columns), ("validation_contexts", self.eval_columns)):
                self.run_settings["data"][name] = contexts_record(columns["context_ids"])
        self.run_settings["training"]["mixed_precision"] = self.accelerator.mixed_precision  # auto resolved: what runs
        self._interrupt_requested = False

    def _set_training_data(self, train_dataset, dialog: bool) -> None:
        """The training rows, read from Arrow batch by batch (a memory-mapped corpus of any size is never copied
        into lists), and the sampler that orders them; `streaming.StreamingTrainer` streams them instead."""
        if len(train_dataset) < self.args.batch_size:
            raise ValueError(f"the training split has {len(train_dataset)} sentences, fewer than one batch of "
                             f"{self.args.batch_size}; lower --batch-size or give more text.")
        self.train_columns = self._feature_columns(train_dataset, dialog)
        self.sampler = LengthBucketBatchSampler(
            column_array(train_dataset, "length"), self.args.batch_size, seed=self.args.seed, drop_last=True,
            num_shards=self.accelerator.num_processes, shard_index=self.accelerator.process_index,
        )

    @staticmethod
    def _feature_columns(dataset, dialog: bool) -> dict[str, ColumnRows]:
        """The columns the collators read, as rows read from Arrow when a batch needs them: "input_ids", and
        "attribute_labels" and (a dialog model's) "context_ids" where the data has them."""
        if dialog and "context_ids" not in dataset.column_names:
            raise ValueError("a dialog model trains on dialogs: the data needs a \"context_ids\" column "
                             "(modeling_demvae.dialog_data.tokenize_dialogs).")
        names = ("input_ids", "attribute_labels", *(("context_ids",) if dialog else ()))
        return {name: ColumnRows(dataset, name) for name in names if name in dataset.column_names}

    def kl_weight(self, step: int) -> float:
        """The KL weight at a step of this run: the model's annealing schedule, from kl_annealing_start on."""
        start = self.state.kl_annealing_start
        return 1.0 if start is None else self.vae_config.kl_weight(start + step)

    # ----- data -----

    def _train_batches(self):
        """Global batches (this process's part) from the saved position on, pass after pass, forever."""
        while True:
            self.sampler.set_epoch(self.state.data_epoch)
            for indices in islice(self.sampler, self.state.batch_in_epoch, None):
                yield self.collate(self._features(self.train_columns, indices))
            self.state.data_epoch, self.state.batch_in_epoch = self.state.data_epoch + 1, 0

    @staticmethod
    def _features(columns: dict, indices) -> list[dict]:
        """The collator's rows: the sentences and, when the data has them, their labels and contexts, each column
        read for these rows alone."""
        rows = {name: column[indices] for name, column in columns.items()}
        return [dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)]

    def _micro_batches(self, batch: dict) -> list[dict]:
        """Split a process's batch into the accumulation micro-batches, each trimmed to its longest sentence."""
        size = len(batch["input_ids"]) // self.args.gradient_accumulation_steps
        parts = []
        for start in range(0, len(batch["input_ids"]), size):
            part = {key: value[start: start + size] for key, value in batch.items()}
            longest = int(part["attention_mask"].sum(1).max())
            parts.append({key: (value[:, :longest] if key in SENTENCE_KEYS else value).to(self.accelerator.device)
                          for key, value in part.items()})
        return parts

    # ----- one optimizer step -----

    def _training_step(self) -> dict[str, float]:
        self.model.train()
        kl_weight = self.kl_weight(self.state.step)
        parts = self._micro_batches(next(self._batches))
        noise = self._posterior_noise(parts)
        aggregate = self._aggregate_component_probs(parts)
        totals = torch.zeros(len(self.logged_terms), device=self.accelerator.device)
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            with nullcontext() if last else self.accelerator.no_sync(self.model), self._dropout_stream(index):
                output = self.model(**part, **self.stage.forward_inputs, kl_weight=kl_weight,
                                    posterior_noise=noise[index], aggregate_component_probs=aggregate)
                self.accelerator.backward(output.loss / len(parts))
            totals += torch.stack([getattr(output, term).detach().float() for term in self.logged_terms]) / len(parts)
        totals = self.accelerator.reduce(totals, reduction="mean")  # equal slices: the whole batch's values
        if not torch.isfinite(totals[0]):
            self._diverged(self.state.step + 1, "the loss is not finite", dict(zip(self.logged_terms, totals.tolist(),
                                                                                        strict=True)))
        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
        fp16 = self.accelerator.mixed_precision == "fp16"
        if not fp16 and not torch.isfinite(grad_norm):  # fp16: the scaler skips the step
            self._diverged(self.state.step + 1, "the loss is not finite", {"gradient norm": float(grad_norm)})
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.state.batch_in_epoch += 1
        return {**dict(zip(self.logged_terms, totals.tolist(), strict=True)), "kl_weight": kl_weight,
                "grad_norm": float(grad_norm), "lr": self.optimizer.param_groups[0]["lr"]}

    def _posterior_noise(self, parts: list[dict]) -> list[dict[str, torch.Tensor]]:
        """Each micro-batch's rows of the whole batch's noise, which every process draws from one generator seeded
        by the seed and the step: a sentence's latent does not depend on the processes and micro-batches."""
        generator = torch.Generator(self.accelerator.device)
        generator.manual_seed(stream_seed(self.args.seed, NOISE, self.state.step))
        noise = response_vae(self.full_model).posterior_noise(self.args.batch_size, generator=generator)
        start = self.accelerator.process_index * self.args.batch_size // self.accelerator.num_processes
        slices = []
        for part in parts:
            stop = start + len(part["input_ids"])
            slices.append({name: value[start:stop] for name, value in noise.items()})
            start = stop
        return slices

    def _aggregate_component_probs(self, parts: list[dict]) -> torch.Tensor | None:
        """q_bar(c) of the whole batch, all processes and micro-batches, from an encoder-only pass without gradients
        (each micro-batch with the dropout masks its training forward will draw); None when this one micro-batch is
        the whole batch, whose forward takes its own mean, when the variant has no q(c|x), or in stage 2 (the
        response VAE frozen, its terms are not trained)."""
        if (not self.vae_config.has_discrete_latent or self.accelerator.num_processes * len(parts) == 1
                or self.stage.number == 2):
            return None
        model, probs = self.accelerator.unwrap_model(self.model), []
        with torch.no_grad(), self.accelerator.autocast():
            for index, part in enumerate(parts):
                with self._dropout_stream(index):
                    probs.append(model.encode(part["input_ids"], part["attention_mask"],
                                              check_vocabulary=False).component_probs.float())
        return self.accelerator.gather(torch.cat(probs)).mean(0)

    @contextmanager
    def _dropout_stream(self, index: int):
        """The global random stream of micro-batch `index` of this step and process, seeded afresh, so that the
        pass for q_bar and the training forward draw the same encoder dropout masks."""
        devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(stream_seed(self.args.seed, DROPOUT, self.state.step, self.accelerator.process_index,
                                          index))
            yield

    def _diverged(self, step: int, problem: str, values: dict) -> None:
        shown = ", ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}: {value}"
                          for name, value in values.items())
        checkpoint = latest_checkpoint(self.checkpoint_dir)
        kept = [what for what, there in ((f"the last good checkpoint {checkpoint}", checkpoint),
                                         (f"the best model in {self.output_dir}", model_files(self.output_dir)))
                if there]  # what is on disk now: after --overwrite, none of the earlier run's
        raise TrainingDiverged(
            f"training stopped at step {step}: {problem} ({shown}). Kept: {' and '.join(kept) or 'nothing yet'}. "
            "Lower --learning-rate or --max-grad-norm, or use --mixed-precision no, then "
            f"{'--resume' if checkpoint else 'train again'}."
        )

    def _check_finite_weights(self) -> None:
        """Before a checkpoint or an export: weights that became NaN or infinite stop the run, never saved."""
        bad = [name for name, weight in self.full_model.named_parameters() if not torch.isfinite(weight).all()]
        if bad:
            self._diverged(self.state.step, "the weights are not finite", {"in": ", ".join(bad[:3])})

    # ----- validation -----

    def evaluate(self) -> dict[str, float]:
        """Sentence-weighted means of the loss terms over the validation set, at full KL weight. Each batch's noise
        is seeded by the seed and the batch's first sentence, so the same weights always score the same, on any
        number of processes, and the global random stream is untouched."""
        return self._validation_pass()[0]

    @torch.no_grad()
    def _validation_pass(self, *, component_probs: bool = False) -> tuple[dict[str, float], torch.Tensor | None]:
        """`evaluate`'s terms and, when asked, q(c|x) of every validation sentence (None when the variant has no
        components). Every process joins the gather, also one whose share of the validation set is empty."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        sums = torch.zeros(len(self.logged_terms) + 1, device=self.accelerator.device)
        generator = torch.Generator(self.accelerator.device)
        gathered = []
        for indices in self.eval_batches:
            batch = self.collate(self._features(self.eval_columns, indices))
            batch = {key: value.to(self.accelerator.device) for key, value in batch.items()}
            generator.manual_seed(stream_seed(self.args.seed, VALIDATION_NOISE, indices[0]))
            noise = response_vae(self.full_model).posterior_noise(len(indices), generator=generator)
            with self.accelerator.autocast():
                output = model(**batch, **self.stage.forward_inputs, kl_weight=1.0, posterior_noise=noise)
            terms = torch.stack([getattr(output, term).float() for term in self.logged_terms])
            sums += torch.cat((terms * len(indices), terms.new_ones(1) * len(indices)))
            if component_probs and getattr(output, "component_probs", None) is not None:
                gathered.append(output.component_probs.float().cpu())
            del output, batch
            release_freed_memory()
        model.train(was_training)
        sums = self.accelerator.reduce(sums, reduction="sum")
        metrics = dict(zip(self.logged_terms, (sums[:-1] / sums[-1]).tolist(), strict=True))
        if not (component_probs and self.vae_config.has_discrete_latent and self.stage.number == 1):
            return metrics, None
        return metrics, torch.cat([probs for part in gather_object([gathered]) for probs in part])

    def _validate(self, progress, *, select: bool = True, curve: bool = False) -> None:
        """A validation: with `select`, the reference's (model selection, decay, stopping); with `curve`, a point
        of the learning curve."""
        metrics, component_probs = self._validation_pass(component_probs=curve)
        if curve:
            self._log_curve_point(metrics, component_probs, progress)
        if not select:
            return
        self._after_validation(metrics)
        self.accelerator.log({f"validation/{k}": v for k, v in metrics.items()}, step=self.state.step)
        best = " (best)" if self.state.best_step == self.state.step else ""
        progress.write(f"step {self.state.step}: {'stage 2 ' * (self.stage.number == 2)}validation "
                       + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()) + best)

    # ----- the learning curve -----

    def _curve_due(self) -> bool:
        every, until = self.args.learning_curve_every, self.args.learning_curve_until
        return every is not None and self.state.step % every == 0 and (until is None or self.state.step <= until)

    def _log_curve_point(self, metrics: dict[str, float], component_probs: torch.Tensor | None, progress) -> None:
        """Append the validation terms and I(x; c) per group (on the validation q(c|x)) to the learning curve."""
        if self.accelerator.is_main_process:
            point = curve_point(self.state.step, metrics, component_probs)
            append_point(self.output_dir, point)
            shown = f", I(x;c) {sum(point['mutual_information']):.3f}" if component_probs is not None else ""
            progress.write(f"step {self.state.step}: learning curve "
                           + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()) + shown)

    def _after_validation(self, metrics: dict[str, float]) -> None:
        """Keep the best model, decay the learning rate on a plateau, and decide on early stopping."""
        args, state = self.args, self.state
        value = selection_value(self.stage.number, metrics, args.selection_metric)
        if math.isfinite(value) and (state.best_metric is None or value > state.best_metric):  # never a NaN model
            state.best_metric, state.best_step, state.validations_without_improvement = value, state.step, 0
            self.export(metrics)
            return
        state.validations_without_improvement += 1
        if state.validations_without_improvement % args.lr_decay_patience == 0:
            for group in self.optimizer.param_groups:
                group["lr"] *= args.lr_decay
        if args.early_stopping_patience and state.validations_without_improvement >= args.early_stopping_patience:
            state.stopped_early = True

    def export(self, metrics: dict[str, float]) -> None:
        """Write the model and tokenizer (`save_pretrained` layout) and a summary of the run into `output_dir`."""
        self._check_finite_weights()
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            model = self.full_model
            start, step = self.state.kl_annealing_start, self.state.step
            summary = {  # kl_annealing_step: where a fine-tuning run from this model continues the schedule
                "step": step, "kl_annealing_step": None if start is None else start + step,
                "kl_weight": self.kl_weight(step), **self.origin, "validation": metrics,
                "training_arguments": {**asdict(self.args), "kl_annealing_start": start},
                "ran": self._what_ran(), "data": {**self.run_settings["data"], "sources": self.data_sources},
                **({"stage": self.stage.number, "stage_switch_step": self.state.stage_switch_step,
                    "selected_on": selection_name(self.stage.number, self.args.selection_metric)}
                   if is_dialog_model(model) else {}),
            }

            def save(folder: Path):
                model.save_pretrained(folder)
                self.tokenizer.save_pretrained(folder)
                (folder / RUN_SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")

            export_atomically(save, self.output_dir)
        self.accelerator.wait_for_everyone()

    # ----- checkpoints, resuming and interruptions -----

    def _what_ran(self) -> dict:
        accelerator = self.accelerator
        return {"mixed_precision": accelerator.mixed_precision, "device": str(accelerator.device),
                "processes": accelerator.num_processes}

    def _save_checkpoint(self) -> None:
        self._check_finite_weights()
        scaler = self.accelerator.scaler
        record = {"step": self.state.step, "trainer": self.state.state_dict(), "run": self.run_settings,
                  "sources": self.data_sources, "scaler": scaler.state_dict() if scaler is not None else None,
                  "seconds": self.clock.seconds()}
        save_checkpoint(self.accelerator, self.checkpoint_dir, self.state.step, model=self.full_model,
                        optimizer=self.optimizer, trainer_state=record, keep=self.args.keep_checkpoints)

    def _start_afresh(self) -> None:
        """--overwrite: the earlier run's checkpoints and model go before anything new is written."""
        if self.checkpoint_dir.is_dir():
            remove_atomically(self.checkpoint_dir)
        for path in model_files(self.output_dir):
            path.unlink()

    def _resume(self) -> None:
        """Load the newest intact checkpoint of this run (newer damaged ones are reported and removed)."""
        accelerator = self.accelerator
        checkpoint, skipped = newest_usable_checkpoint(self.checkpoint_dir, accelerator.process_index)
        if checkpoint is None and not skipped:
            accelerator.print(f"--resume: no checkpoint in {self.checkpoint_dir} yet; starting from scratch.")
            return
        if checkpoint is None:
            raise CheckpointError(f"--resume: no usable checkpoint in {self.checkpoint_dir} ({'; '.join(skipped)}); "
                                  "--overwrite starts the run again.")
        differences = setting_differences(checkpoint.state["run"], self.run_settings,
                                          defaults=setting_defaults(type(self.config), TrainingArguments))
        if differences:
            raise CheckpointError(
                f"--resume: {checkpoint.path} belongs to a run with other settings ({'; '.join(differences)}); "
                "resume with that run's settings, --overwrite to start again, or --init-from its folder with a "
                "new --output-dir to continue from its model."
            )
        checkpoint.load_weights(self.full_model)
        self.state.load_state_dict(checkpoint.state["trainer"])
        if self.state.stage != self.stage.number:  # stage 2: the response VAE frozen again, the optimizer rebuilt
            self._enter_stage(self.state.stage)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        if accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(checkpoint.state["scaler"])
        self.clock = RunClock(checkpoint.state.get("seconds"))  # None: a checkpoint from before training was timed
        note = restore_random_states(checkpoint.random_tensors, checkpoint.random_metadata)
        accelerator.wait_for_everyone()  # every process has read before the damaged ones go
        if accelerator.is_main_process:
            for line in skipped:
                print(f"warning: skipped and removed damaged checkpoint {line}.", file=sys.stderr)
            checkpoints = list_checkpoints(self.checkpoint_dir)
            for path in checkpoints[checkpoints.index(checkpoint.path) + 1:]:
                remove_atomically(path)
            if note:
                print(f"warning: {note}.", file=sys.stderr)
        accelerator.print(f"Resumed from {checkpoint.path} (step {self.state.step}"
                          f"{', the newest intact checkpoint' if skipped else ''}).")

    def _request_stop(self) -> None:
        self._interrupt_requested = True

    def _stop_requested(self) -> bool:
        """Whether any process got Ctrl-C: they all stop after the same step."""
        if self.accelerator.num_processes == 1:
            return self._interrupt_requested
        flag = torch.tensor([float(self._interrupt_requested)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item())

    # ----- the loop -----

    def train(self) -> TrainingState:
        """Run (or resume) training to `max_steps` or early stopping; the best model ends up in `output_dir`, which
        the main process holds locked meanwhile (a second run into it is refused)."""
        check_output_dir(self.args.output_dir, resume=self.args.resume, overwrite=self.args.overwrite)
        with output_lock(self.output_dir) if self.accelerator.is_main_process else nullcontext():
            return self._train()

    def _train(self) -> TrainingState:
        args, state, accelerator = self.args, self.state, self.accelerator
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if args.overwrite:
                self._start_afresh()
            self.output_dir.mkdir(parents=True, exist_ok=True)
            remove_leftovers(self.checkpoint_dir)
            remove_leftovers(self.output_dir)
        accelerator.wait_for_everyone()
        set_seed(args.seed)
        self.clock = RunClock()  # the training time, kept in every checkpoint
        if args.resume:
            self._resume()
        if accelerator.log_with:
            accelerator.init_trackers("runs", config={k: v for k, v in {**asdict(args), **self.config.to_dict()}.items()
                                                      if isinstance(v, int | float | str | bool)})
        accelerator.print(f"Training on {accelerator.num_processes} process(es) ({accelerator.distributed_type}, "
                          f"{accelerator.device}), {args.batch_size} sentences per step, mixed precision "
                          f"{accelerator.mixed_precision}.")
        if self.accelerator.is_main_process:
            trim_curve(self.output_dir, self.state.step)
        self._batches = self._train_batches()
        checkpoint_every = args.checkpoint_every or args.eval_every
        with ctrl_c_between_steps(self._request_stop), tqdm(
                total=args.max_steps, initial=state.step, desc="Training", dynamic_ncols=True,
                disable=not accelerator.is_local_main_process) as progress:
            while state.step < args.max_steps and not state.stopped_early:
                logs = self._training_step()
                progress.update(1)
                if state.step % args.logging_steps == 0 or state.step == args.max_steps:
                    progress.set_postfix({k: f"{logs[k]:.3g}" for k in ("loss", "nll", "zkl", "dispersion", "mi",
                                                                           "policy_loss", "kl_weight") if k in logs})
                    accelerator.log({f"train/{k}": v for k, v in logs.items()}, step=state.step)
                validate = state.step in (args.max_steps, args.freeze_step) or state.step % args.eval_every == 0
                curve = self._curve_due()
                if validate or curve:
                    self._validate(progress, select=validate, curve=curve)
                stop = self._stop_requested()
                switch = self._stage_one_over()
                if switch:
                    self._switch_to_stage_two(progress)
                if validate or switch or state.step % checkpoint_every == 0 or stop:
                    self._save_checkpoint()
                if stop:
                    accelerator.end_training()
                    raise TrainingInterrupted(f"interrupted at step {state.step}; the run is saved in "
                                              f"{latest_checkpoint(self.checkpoint_dir)}: continue it with the same "
                                              "command and --resume.")
        accelerator.end_training()
        if state.best_metric is None:
            raise TrainingDiverged(f"no validation gave a finite {args.selection_metric}, so no model was exported; "
                                   "lower --learning-rate or --max-grad-norm, or use --mixed-precision no.")
        if state.stopped_early:
            accelerator.print(f"Early stopping at step {state.step}: no improvement in "
                              f"{state.validations_without_improvement} validations.")
        return state


__all__ = [
    "DEMVAETrainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "TrainingState",
    "adam",
]
