"""A synthetic corpus with known latent modes: the default corpus of `demvae train` and a test bed for mode collapse.

Each sentence type (a "mode") is a small template grammar: its own frame of function words around slots filled
from word lists that all types share (nouns, adjectives, names, verbs). Most of each sentence's words are shared
content words, so the type is a small part of what the latent must carry, and a mixture prior that collapses
loses it. The true mode of every sentence is kept, to score the learned
components against it (homogeneity).

Template syntax: `{NOUN}` draws a word from a shared slot, `[a|b|]` picks one alternative (the empty one drops it).
"""

import random
import re
from pathlib import Path

from datasets import Dataset, DatasetDict

SLOTS = {
    "NOUN": "cat dog bird car house book tree river city ship road garden".split(),
    "ADJ": "big small red old new quiet happy dark green strange".split(),
    "NAME": "anna ben carl dora eric fay".split(),
    "VERB": "see find take paint move clean".split(),
    "PAST": "saw found took painted moved cleaned".split(),
}

SENTENCE_TYPES = {
    "question": ["where did {NAME} {VERB} the {NOUN} ?"],
    "request": ["could you please {VERB} my {NOUN} for me ?"],
    "story": ["yesterday {NAME} {PAST} a {ADJ} {NOUN} [in|near] the city ."],
    "opinion": ["i think that the {NOUN} is [very|quite] {ADJ} ."],
    "greeting": ["hello {NAME} , how are you doing [today|tonight] ?"],
    "refusal": ["no , i will not {VERB} the {ADJ} {NOUN} ."],
    "comparison": ["my {NOUN} is more {ADJ} than your {NOUN} ."],
    "scene": ["there is a {ADJ} {NOUN} [behind|under] the {NOUN} ."],
}
MODE_NAMES = tuple(SENTENCE_TYPES)
_CHOICE = re.compile(r"\[([^\[\]]*)\]")
_SLOT = re.compile(r"\{([A-Z]+)\}")


def expand(template: str, rng: random.Random) -> str:
    """One sentence from a template: alternatives chosen, slots filled, spaces normalized."""
    text = _CHOICE.sub(lambda m: rng.choice(m.group(1).split("|")), template)
    text = _SLOT.sub(lambda m: rng.choice(SLOTS[m.group(1)]), text)
    return " ".join(text.split())


def generate_sentences(num_sentences: int, *, seed: int = 0, num_modes: int | None = None):
    """`num_sentences` sentences with their true mode indices (uniform over the first `num_modes` types)."""
    num_modes = len(SENTENCE_TYPES) if num_modes is None else num_modes
    if not 1 <= num_modes <= len(SENTENCE_TYPES):
        raise ValueError(f"num_modes must be in [1, {len(SENTENCE_TYPES)}], got {num_modes}.")
    rng = random.Random(seed)
    texts, modes = [], []
    for _ in range(num_sentences):
        mode = rng.randrange(num_modes)
        texts.append(expand(rng.choice(SENTENCE_TYPES[MODE_NAMES[mode]]), rng))
        modes.append(mode)
    return texts, modes


def synthetic_corpus(num_train: int = 10_000, num_valid: int = 1_000, num_test: int = 1_000, *, seed: int = 0,
                     num_modes: int | None = None) -> DatasetDict:
    """Train/validation/test splits with "text" and the true "mode" column; each split has its own random stream."""
    splits = {}
    for offset, (name, size) in enumerate((("train", num_train), ("validation", num_valid), ("test", num_test))):
        if size:
            texts, modes = generate_sentences(size, seed=seed * 3 + offset, num_modes=num_modes)
            splits[name] = Dataset.from_dict({"text": texts, "mode": modes})
    return DatasetDict(splits)


def write_synthetic_corpus(folder, **kwargs) -> Path:
    """Write {train,valid,test}.txt (readable by `load_corpus(folder)`) and {split}.modes.txt (one mode a line)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, split in synthetic_corpus(**kwargs).items():
        stem = "valid" if name == "validation" else name
        (folder / f"{stem}.txt").write_text("\n".join(split["text"]) + "\n", encoding="utf-8")
        (folder / f"{stem}.modes.txt").write_text("\n".join(map(str, split["mode"])) + "\n", encoding="utf-8")
    return folder


__all__ = ["MODE_NAMES", "SENTENCE_TYPES", "generate_sentences", "synthetic_corpus", "write_synthetic_corpus"]
