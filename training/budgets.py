"""What `demvae reproduce` runs: the paper's tables, the budgets that scale them, and the runs of a budget.

A budget changes the presets' training settings (for every table, then per table), the `demvae evaluate` options
(per table where a table's models take other ones: a dialog model's evaluation has its own), and may name its own
runs; it says whether it measures the rPPL ceiling and renders release cards, how many threads
a run gets and where its models live. `demvae reproduce --list-budgets` prints them.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from .train import MODEL_FIELDS, PRESET_DIR

SEEDED_RUNS = {preset: (0, 1, 2) for preset in (  # the comparisons the paper is about: mode collapse varies by seed
    "ptb-gm-vae", "ptb-dgm-vae-mi", "dailydialog-dcm-vae-sup", "dailydialog-cm-vae-sup",
    "dailydialog-dcm-vae-sup-relaxed", "dailydialog-cm-vae-sup-relaxed",  # the supervised pair that generates by label
    "dailydialog-dcm-vae-mi-bonus",  # the unsupervised DCM-VAE's recommended configuration
    "smd-di-vae-dialog", "smd-gm-vae-dialog", "smd-dgm-vae-mi-dialog")}
TABLES = {
    "ptb": ("Penn Treebank", ["ptb-vae", "ptb-di-vae", "ptb-semi-vae", "ptb-semi-vae-mi", "ptb-gm-vae",
                              "ptb-gm-vae-mi", "ptb-dgm-vae", "ptb-dgm-vae-mi", "ptb-rnnlm"]),
    "dailydialog": ("DailyDialog", ["dailydialog-di-vae", "dailydialog-gm-vae", "dailydialog-gm-vae-mi",
                                    "dailydialog-dgm-vae", "dailydialog-dgm-vae-mi"]),
    "attributes": ("DailyDialog: generation by label", ["dailydialog-dcm-vae", "dailydialog-dcm-vae-relaxed",
                                                        "dailydialog-dcm-vae-mi", "dailydialog-dcm-vae-mi-bonus",
                                                        "dailydialog-dcm-vae-sup-relaxed",
                                                        "dailydialog-cm-vae-sup-relaxed", "dailydialog-dcm-vae-sup",
                                                        "dailydialog-cm-vae-sup", "dailydialog-dgm-vae-mi"]),
    "smd": ("Stanford Multi-Domain dialogs: latent actions", ["smd-di-vae-dialog", "smd-gm-vae-dialog",
                                                             "smd-dgm-vae-mi-dialog"]),
}
DATASETS = {"ptb": "ptb", "dailydialog": "daily_dialog", "attributes": "daily_dialog", "smd": "smd"}
# Tables of dialog models (`DEMVAEForDialogGeneration`): evaluated by the dialog metrics, so no rPPL ceiling.
DIALOG_TABLES = ("smd",)
# Label columns of a table's control accuracy: its unsupervised models get them by `demvae label-components`.
LABELLED_TABLES = {"attributes": ("act", "emotion")}
# Per table, the model that should win and the one it is measured against: the paper's claims.
COMPARISONS = {"ptb": ("ptb-dgm-vae-mi", "ptb-gm-vae"), "dailydialog": ("dailydialog-dgm-vae-mi", "dailydialog-gm-vae"),
               "attributes": ("dailydialog-dcm-vae-sup-relaxed", "dailydialog-cm-vae-sup-relaxed"),
               "smd": ("smd-dgm-vae-mi-dialog", "smd-gm-vae-dialog")}


@dataclass(frozen=True)
class Budget:
    """What a budget changes and adds.

    Args:
        description: One sentence for --list-budgets and results.md.
        train: Training settings over every preset's.
        evaluate: `demvae evaluate` options.
        table_train: Table -> more training settings for its runs (the full budget's learning curve on PTB).
        table_evaluate: Table -> the `demvae evaluate` options of its runs instead of `evaluate` (a dialog table's:
            the dialog evaluation refuses the sentence model's metric options).
        runs: The presets it runs, in this order, one seed (0) each; empty: every table's, SEEDED_RUNS seeded.
        ceiling: Measure the rPPL language model on real sentences once per corpus.
        cards: Render a model card beside each model's record.
        threads: CPU threads per run (None: the cores shared among the --jobs).
        work_dir: Default folder of the models and checkpoints (`~` expanded; $DEMVAE_WORK_DIR overrides).
        deviations: What differs from the paper, listed in results.md.
    """

    description: str
    train: dict = field(default_factory=dict)
    evaluate: dict = field(default_factory=dict)
    table_train: dict = field(default_factory=dict)
    table_evaluate: dict = field(default_factory=dict)
    runs: tuple[str, ...] = ()
    ceiling: bool = False
    cards: bool = False
    threads: int | None = None
    work_dir: str = "runs/reproduce"
    deviations: tuple[str, ...] = ()


FULL_STEPS = 20_000
# The reference DailyDialog command: no learning-rate decay, the best model by the validation objective (the loss
# that is minimized, the attribute cross-entropy included for a supervised model), at most 50 validations.
REFERENCE_DAILYDIALOG = {"max_steps": 100_000, "lr_decay": 1.0, "selection_metric": "loss"}
# The reference SMD run (main_stanford.py): 100 epochs of SMD's responses at most, stage 2 from the preset's
# freeze_step, early stopping after 10 validations without improvement.
REFERENCE_SMD_STEPS = 34_400
# A dialog model's evaluation takes none of the sentence model's metric options: the whole test split, every metric.
WHOLE_DIALOG_EVALUATION = {table: {} for table in DIALOG_TABLES}
# The dialog model's context side at half the reference width (configuration/smd-*-dialog.json), as the cpu budget's
# response VAE.
HALF_WIDTH_CONTEXT = {"utterance_hidden_size": 128, "context_hidden_size": 256, "policy_hidden_size": 256,
                      "attention_size": 128}
BUDGETS = {
    "paper": Budget("the reference protocol: the presets as they are (spec section 5), NLL with 500 samples and "
                    "rPPL with 40,000 + 3,000 samples on the whole test set (spec section 6)",
                    ceiling=True, cards=True),
    "full": Budget(
        "the reference models, batch and schedule of the presets on a CPU, one thread a run (KL annealing, "
        "validation every 2,000 steps, learning-rate decay, early stopping and model selection as the presets say) "
        f"with one posterior sample, Penn Treebank training capped at {FULL_STEPS:,} steps, DailyDialog's as the "
        "reference DailyDialog command (no learning-rate decay, selection on the objective, early stopping after 10 "
        "validations without improvement, at most 50), checkpoints every 500; the paper's "
        "whole evaluation: NLL with 500 importance samples and BLEU on the whole test set, rPPL and wKL from "
        "40,000 + 3,000 prior samples with the language model trained until its validation perplexity stops "
        "improving, homogeneity on DailyDialog, and the rPPL ceiling of real sentences; on Penn Treebank a learning "
        "curve every 500 steps up to step 3,500; SMD's dialog models as the reference SMD run (stage 2 from step "
        "6,000 or 7,000, at most 100 epochs) with every dialog metric on the whole test split",
        train={"num_posterior_samples": 1, "max_steps": FULL_STEPS, "checkpoint_every": 500},
        table_train={"ptb": {"learning_curve_every": 500, "learning_curve_until": 3_500},
                     **dict.fromkeys(("dailydialog", "attributes"), REFERENCE_DAILYDIALOG),
                     "smd": {"max_steps": REFERENCE_SMD_STEPS}},
        evaluate={"nll_samples": 500, "rppl_preset": "paper", "rppl_max_epochs": 100},
        table_evaluate=WHOLE_DIALOG_EVALUATION,
        runs=("ptb-gm-vae", "ptb-dgm-vae-mi", "dailydialog-gm-vae", "dailydialog-dgm-vae-mi",
              "dailydialog-dcm-vae-sup-relaxed", "dailydialog-cm-vae-sup-relaxed", "smd-di-vae-dialog",
              "smd-gm-vae-dialog", "smd-dgm-vae-mi-dialog"),
        ceiling=True, cards=True, threads=1, work_dir="~/demvae-runs",
        deviations=(
            "One posterior sample of z per sentence in training; the reference Penn Treebank runs average 20 (the "
            "reference DailyDialog command draws 1, as here).",
            f"Penn Treebank training stops at {FULL_STEPS:,} steps ({FULL_STEPS // 2000} validations, about 14 "
            "epochs) instead of at most 50 validations (100,000 steps); with early stopping after 10 validations "
            "without improvement, it cannot stop earlier. Both Penn Treebank models' best validation was at step "
            "8,000, so the cap did not bind. DailyDialog trains as the reference DailyDialog command does (no "
            "learning-rate decay, at most 50 validations, early stopping after 10 without improvement): its first "
            "full-budget models, capped at 20,000 steps with the presets' decay, were still improving at the cap. "
            "The supervised DCM-VAE and its beta = 0 twin (CM-VAE) with the relaxed estimator, the "
            "generation-by-label table's comparison, train the same way, selected on the objective (their presets "
            "select on the ELBO). SMD's dialog models "
            f"train as the reference SMD run, at most {REFERENCE_SMD_STEPS:,} steps (100 epochs).",
            "One seed (0) per model.",
            "A CPU, one thread per run, instead of a GPU, in bf16 autocast where the CPU has bf16 units (AMX or "
            "AVX-512 bf16) and float32 elsewhere (`--mixed-precision auto`; the line above names each machine's); "
            "the evaluation's random draws (importance "
            "samples in chunks of 200 sentences, prior samples, the language models' initialisations) are this "
            "package's.",
            "The rPPL language model is this package's: a one-layer 256-unit LSTM with tied embeddings, Adam, "
            "stopped when its perplexity on the 3,000 validation samples has not improved for 2 epochs (at most "
            "100 epochs).",
        ),
    ),
    "cpu": Budget(
        "20 to 30 minutes a run on one CPU core beside a second run (`--jobs 2`: two models in 20 to 30 minutes on "
        "two cores): a model half the reference width, one posterior sample, 2,000 "
        "steps with the KL annealing compressed to match, validation every 250 steps; "
        "evaluation on the first 1,000 test sentences with 50 importance samples, rPPL and wKL from 2,000 + 200 "
        "samples and a language model trained for at most 8 epochs; SMD's dialog models with the context side half "
        "the reference width too, stage 1 (the response VAE, its KL annealing compressed into it) for 1,000 steps "
        "and stage 2 up to step 2,500, evaluated on the whole test split",
        train={"embed_size": 256, "encoder_hidden_size": 256, "decoder_hidden_size": 256,
               "num_posterior_samples": 1, "max_steps": 2000, "eval_every": 250,
               "kl_annealing_midpoint": 700, "kl_annealing_slope": 0.008, "lr_decay_patience": 2,
               "early_stopping_patience": 4},
        table_train={"smd": {**HALF_WIDTH_CONTEXT, "freeze_step": 1000, "max_steps": 2500,
                             "kl_annealing_midpoint": 400, "kl_annealing_slope": 0.015}},
        evaluate={"max_sentences": 1000, "nll_samples": 50, "rppl_preset": "quick", "rppl_samples": 2000,
                  "rppl_max_epochs": 8},
        table_evaluate=WHOLE_DIALOG_EVALUATION,
    ),
    "smoke": Budget(
        "a pipeline check, not a result: a tiny model, 30 steps (a dialog model: 15 in each stage), 50 test "
        "sentences",
        train={"embed_size": 32, "encoder_hidden_size": 32, "decoder_hidden_size": 32, "vocab_size": 2000,
               "num_posterior_samples": 1, "max_steps": 30, "eval_every": 15},
        table_train={"smd": {"utterance_hidden_size": 16, "context_hidden_size": 32, "policy_hidden_size": 32,
                             "attention_size": 16, "freeze_step": 15}},
        evaluate={"max_sentences": 50, "nll_samples": 5, "rppl_preset": "smoke", "rppl_max_epochs": 2},
        table_evaluate={"smd": {"max_sentences": 50}},
    ),
}


@dataclass(frozen=True)
class Run:
    """One model to train and evaluate: a preset of configuration/ with a seed."""

    table: str
    preset: str
    seed: int

    @property
    def name(self) -> str:
        """PRESET-seedN; a preset that another table holds first (its home) is TABLE-PRESET-seedN here."""
        own = f"{self.preset}-seed{self.seed}"
        return own if table_of(self.preset) == self.table else f"{self.table}-{own}"

    @property
    def dataset(self) -> str:
        return DATASETS[self.table]


def table_of(preset: str) -> str:
    return next(table for table, (_, presets) in TABLES.items() if preset in presets)


def corpus_table(table: str) -> str:
    """The first table of the table's corpus: the one whose rPPL ceiling every table of that corpus shares."""
    return next(first for first in TABLES if DATASETS[first] == DATASETS[table])


def all_runs(tables=tuple(TABLES), presets=None, *, budget: str | None = None) -> list[Run]:
    """The runs of the chosen tables, restricted to `presets` when given (unknown ones: an error): the budget's own
    list in its order, else every table's presets in table order, a whole table before the extra seeds."""
    own = BUDGETS[budget].runs if budget else ()
    if own:
        runs = [Run(table_of(preset), preset, 0) for preset in own if table_of(preset) in tables]
    else:
        runs = sorted((Run(table, preset, seed) for table in tables for preset in TABLES[table][1]
                       for seed in SEEDED_RUNS.get(preset, (0,))), key=lambda run: (tables.index(run.table), run.seed))
    known = list(dict.fromkeys(run.preset for run in runs))
    if presets:
        unknown = sorted(set(presets) - set(known))
        if unknown:
            raise ValueError(f"unknown run(s) {unknown}; the tables {list(tables)} have: {', '.join(known)}"
                             + (f" in budget {budget!r}." if own else "."))
        runs = [run for run in runs if run.preset in presets]
    return runs


def preset_path(preset: str) -> Path:
    return PRESET_DIR / f"{preset}.json"


def run_settings(run: Run, budget: str) -> dict:
    """Everything the run's result depends on, recorded beside the result: a change makes the run stale."""
    spec = BUDGETS[budget]
    return {"preset": run.preset, "seed": run.seed, "budget": budget,
            "train": {**spec.train, **spec.table_train.get(run.table, {})},
            "evaluate": spec.table_evaluate.get(run.table, spec.evaluate),
            "preset_settings": json.loads(preset_path(run.preset).read_text())}


def model_name(preset: str) -> str:
    """The paper's name of a preset's model, e.g. 'ptb-dgm-vae-mi' -> 'DGM-VAE + MI', with the categorical family's
    relaxed estimator where it is not the default and the label columns it is trained on, e.g. 'DCM-VAE, supervised:
    act, emotion'; a dialog model's is its response VAE's with "latent actions"."""
    from modeling_demvae import DEMVAEConfig  # here: `demvae reproduce --help` reads this module

    settings = json.loads(preset_path(preset).read_text())
    name = DEMVAEConfig(**{key: value for key, value in settings.items() if key in MODEL_FIELDS}).paper_name
    if settings.get("gumbel_hard") is False:
        name += ", relaxed estimator"
    if settings.get("mutual_information_bonus"):
        name += f", MI bonus {settings['mutual_information_bonus']:g}"
    if settings.get("anneal_component_terms") is False:
        name += ", component terms unannealed"
    if settings.get("model_type") == "demvae_dialog":  # as DEMVAEDialogConfig.paper_name says it
        name += " latent actions"
    return name + (f", supervised: {', '.join(settings['supervise'])}" if settings.get("supervise") else "")


__all__ = ["BUDGETS", "COMPARISONS", "DATASETS", "DIALOG_TABLES", "LABELLED_TABLES", "TABLES", "Budget", "Run",
           "all_runs", "corpus_table", "model_name", "preset_path", "run_settings", "table_of"]
