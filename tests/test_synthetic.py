import re
from collections import defaultdict

import pytest

from modeling_demvae.data import load_corpus
from modeling_demvae.synthetic import (
    MODE_NAMES,
    SENTENCE_TYPES,
    SLOTS,
    generate_sentences,
    synthetic_corpus,
    write_synthetic_corpus,
)


def template_regex(template: str) -> re.Pattern:
    """An independent reading of the template syntax: [a|b|] alternatives, {SLOT} words, and spaces that may
    vanish where an empty alternative was chosen."""
    pattern = re.escape(template).replace("\\ ", " ")
    pattern = re.sub(r"\\\[(.*?)\\\]", lambda m: "(?:" + m.group(1).replace("\\|", "|") + ")", pattern)
    pattern = re.sub(r"\\\{([A-Z]+)\\\}", lambda m: "(?:" + "|".join(SLOTS[m.group(1)]) + ")", pattern)
    return re.compile(pattern.replace(" ", " ?"))


def matching_modes(text: str) -> set[str]:
    return {name for name, templates in SENTENCE_TYPES.items() if any(template_regex(t).fullmatch(text)
                                                                       for t in templates)}


def test_every_sentence_comes_from_a_template_of_its_mode_only():
    texts, modes = generate_sentences(500, seed=1)
    for text, mode in zip(texts, modes, strict=True):
        assert matching_modes(text) == {MODE_NAMES[mode]}, text


def test_deterministic_balanced_and_vocabulary_shared_across_modes():
    assert generate_sentences(50, seed=3) == generate_sentences(50, seed=3)
    assert generate_sentences(50, seed=3) != generate_sentences(50, seed=4)
    texts, modes = generate_sentences(4000, seed=0)
    counts = [modes.count(m) for m in range(len(MODE_NAMES))]
    assert 5 <= len(MODE_NAMES) <= 10 and min(counts) > 0.7 * 4000 / len(MODE_NAMES)
    modes_of_word = defaultdict(set)
    for text, mode in zip(texts, modes, strict=True):
        for word in text.split():
            modes_of_word[word].add(mode)
    content = [w for slot in SLOTS.values() for w in slot]
    shared = [w for w in content if len(modes_of_word[w]) >= 3]
    assert len(shared) >= 0.5 * len(content)  # modes cannot be told apart by their content words alone


def test_corpus_splits_and_files_round_trip(tmp_path):
    corpus = synthetic_corpus(num_train=30, num_valid=10, num_test=5, seed=2)
    assert {name: len(split) for name, split in corpus.items()} == {"train": 30, "validation": 10, "test": 5}
    assert corpus["train"]["text"] != corpus["validation"]["text"][:10]
    write_synthetic_corpus(tmp_path, num_train=30, num_valid=10, num_test=5, seed=2)
    loaded = load_corpus(str(tmp_path))
    assert loaded["validation"]["text"] == corpus["validation"]["text"]
    assert (tmp_path / "test.modes.txt").read_text().split() == [str(m) for m in corpus["test"]["mode"]]
    with pytest.raises(ValueError, match="num_modes"):
        generate_sentences(3, num_modes=99)
