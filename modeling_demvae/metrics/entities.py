"""Entity F1 of generated responses against the gold ones, with SMD's (KVRET's) entity list, `kvret_entities.json`.

Which surface forms count: every value of every list in the file (event, time, date, party, room, agenda, location,
weekly_time, temperature, weather_attribute, traffic_info, poi_type, distance), and for each point of interest its
name, address and type. Two spellings SMD's text uses are added for numbers: a temperature also as "<n>f" (SMD
writes "20-30F"), a time also with a space ("7 pm" for "7pm"); both count as the list's entity.

How they are matched: the forms and the responses are split into words by the same function (the dialog
tokenizer's: lower-cased, punctuation split off), and an entity is found where its words occur as a contiguous run,
the longest form first, runs never overlapping ("conference room 100" is one entity, not also "100"). A response's
entities are a set: a repeated entity counts once. Over a corpus, true positives (entities of the generated
response that are in the gold one), false positives and false negatives are summed over the responses, and F1 is
the harmonic mean of the summed precision and recall (micro-averaged): a response whose gold response has no entity
still costs precision for each entity it names.
"""

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

ENTITY_FILE = "kvret_entities.json"  # in SMD's folder


def entity_forms(entities: dict) -> dict[str, str]:
    """Surface form -> the entity it names, from `kvret_entities.json`'s content (a dict of lists)."""
    forms = {}
    for kind, values in entities.items():
        for value in values:
            names = [value[key] for key in ("poi", "address", "type") if value.get(key)] \
                if isinstance(value, dict) else [value]
            for name in names:
                canonical = str(name).lower()
                forms[canonical] = canonical
                if kind == "temperature":
                    forms[f"{canonical}f"] = canonical
                if kind == "time" and canonical[-2:] in ("am", "pm"):
                    forms[f"{canonical[:-2]} {canonical[-2:]}"] = canonical
    return forms


class EntityMatcher:
    """Finds the entities of word sequences: `find(words)` -> the set of entities named there."""

    def __init__(self, forms: dict[str, str], split_words: Callable[[str], list[str]]):
        self.forms = {tuple(split_words(form)): entity for form, entity in forms.items() if split_words(form)}
        self.longest = max((len(words) for words in self.forms), default=0)

    @classmethod
    def from_file(cls, path: str | os.PathLike, split_words: Callable[[str], list[str]]) -> "EntityMatcher":
        path = Path(path)
        try:
            entities = json.loads(path.read_text(encoding="utf-8"))
            forms = entity_forms(entities)
        except (ValueError, AttributeError, TypeError) as error:
            raise ValueError(f"{path} is not an entity list like SMD's {ENTITY_FILE}: a JSON object of entity kinds, "
                             f"each a list of values or of {{'poi', 'address', 'type'}} records ({error}).") from None
        return cls(forms, split_words)

    def find(self, words: Sequence[str]) -> set[str]:
        """The entities named in `words`: leftmost, then longest, non-overlapping runs."""
        found, start = set(), 0
        while start < len(words):
            for size in range(min(self.longest, len(words) - start), 0, -1):
                entity = self.forms.get(tuple(words[start:start + size]))
                if entity is not None:
                    found.add(entity)
                    start += size
                    break
            else:
                start += 1
        return found


def entity_scores(references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]],
                  matcher: EntityMatcher) -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1 (0-1) of hypotheses against their references (word lists);
    0 where nothing was named or nothing was to be found."""
    if len(references) != len(hypotheses):
        raise ValueError(f"need one reference per hypothesis, got {len(references)} and {len(hypotheses)}.")
    true_positives = false_positives = false_negatives = 0
    for reference, hypothesis in zip(references, hypotheses):
        gold, named = matcher.find(reference), matcher.find(hypothesis)
        true_positives += len(gold & named)
        false_positives += len(named - gold)
        false_negatives += len(gold - named)
    precision = true_positives / (true_positives + false_positives) if true_positives + false_positives else 0.0
    recall = true_positives / (true_positives + false_negatives) if true_positives + false_negatives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gold_entities": true_positives + false_negatives}


__all__ = ["ENTITY_FILE", "EntityMatcher", "entity_forms", "entity_scores"]
