"""`generate` by transformers' conventions: per-step scores, logits and hidden states in `return_dict_in_generate`
outputs, `inputs_embeds` prompts, the decoder's state as a transformers `Cache` that a later call continues from, and
the warning about prompts and sentences that are mostly `<unk>`."""

import logging

import pytest
import torch
from conftest import tiny_model
from transformers import Cache

from modeling_demvae import DEMVAECache, metrics

BOS, EOS, PAD, UNK = 1, 2, 0, 3
PROMPT = torch.tensor([[PAD, PAD, BOS, 5, 6], [BOS, 7, 8, 9, 10]])  # left-padded, as generate expects
MODES = {
    "greedy": {},
    "sample": dict(do_sample=True, temperature=0.5, top_k=5),
    "beam": dict(num_beams=3),
    "beam_sample": dict(num_beams=3, do_sample=True, temperature=0.5),
}


@pytest.fixture
def model():
    return tiny_model(initializer_range=1.0).eval()  # large weights: the tokens depend on the state


def without_eos(scores: torch.Tensor) -> torch.Tensor:
    """What `min_new_tokens` does to a step's scores before it is reached."""
    return scores.index_fill(1, torch.tensor([EOS]), -float("inf"))


def expected_scores(mode: str, logits: torch.Tensor) -> torch.Tensor:
    """transformers' scores: the processed logits, or for beam search the processed log-probabilities."""
    if mode == "greedy":
        return without_eos(logits)
    if mode == "sample":  # min_new_tokens, then temperature 0.5, then top-k 5
        scores = without_eos(logits) / 0.5
        return scores.masked_fill(scores < scores.topk(5).values[:, -1:], -float("inf"))
    scores = without_eos(logits.log_softmax(-1))
    return scores if mode == "beam" else scores / 0.5


@pytest.mark.parametrize("mode", MODES)
def test_return_dict_outputs_have_one_entry_per_step(model, mode):
    torch.manual_seed(0)
    steps, beams = 4, MODES[mode].get("num_beams", 1)
    out = model.generate(PROMPT, attention_mask=PROMPT.ne(PAD).long(), latent=model.sample_prior(2),
                         max_new_tokens=steps, min_new_tokens=steps, return_dict_in_generate=True,
                         output_scores=True, output_logits=True, output_hidden_states=True, **MODES[mode])
    assert out.sequences.shape == (2, PROMPT.shape[1] + steps)
    assert len(out.scores) == len(out.logits) == len(out.hidden_states) == steps
    rows, hidden_size = 2 * beams, model.config.decoder_hidden_size
    for step, (scores, logits, hidden_states) in enumerate(zip(out.scores, out.logits, out.hidden_states)):
        assert scores.shape == logits.shape == (rows, model.config.vocab_size)
        torch.testing.assert_close(scores, expected_scores(mode, logits))
        assert isinstance(hidden_states, tuple) and len(hidden_states) == 1  # the GRU: one layer
        assert hidden_states[0].shape == (rows, PROMPT.shape[1] if step == 0 else 1, hidden_size)
        torch.testing.assert_close(model.lm_head(hidden_states[0][:, -1]), logits)


def test_greedy_hidden_states_and_logits_are_the_forward_pass_of_the_sequences(model):
    latent, mask = model.sample_prior(2), PROMPT.ne(PAD).long()
    out = model.generate(PROMPT, attention_mask=mask, latent=latent, max_new_tokens=5, min_new_tokens=5,
                         return_dict_in_generate=True, output_hidden_states=True, output_logits=True)
    sequences = out.sequences
    full = model(sequences[:, :-1], attention_mask=torch.cat([mask, torch.ones(2, 4, dtype=torch.long)], 1),
                 latent=latent, output_hidden_states=True)
    generated = torch.cat([step[0] for step in out.hidden_states], dim=1)
    real = torch.cat([mask, torch.ones(2, 4, dtype=torch.long)], 1).bool()  # the padding's outputs are not defined
    torch.testing.assert_close(generated[real], full.hidden_states[0][real])
    for step, logits in enumerate(out.logits):
        torch.testing.assert_close(logits, full.logits[:, PROMPT.shape[1] - 1 + step])
    assert len(set(sequences[:, PROMPT.shape[1]:].flatten().tolist())) > 2  # the check sees varied tokens


@pytest.mark.parametrize("training", [False, True])
def test_forward_returns_the_decoder_hidden_states(training):
    model = tiny_model(deterministic_eval=True).train(training)
    input_ids = PROMPT[:, 2:]
    out = model(input_ids, output_hidden_states=True)
    (hidden,) = out.hidden_states
    assert hidden.shape == (2, 3, model.config.decoder_hidden_size)
    torch.testing.assert_close(model.lm_head(hidden), out.logits)
    assert model(input_ids).hidden_states is None
    if not training:  # the tuple holds the same fields, hidden states last; config.output_hidden_states asks too
        as_tuple = model(input_ids, output_hidden_states=True, return_dict=False)
        assert len(as_tuple) == len(model(input_ids, return_dict=False)) + 1
        torch.testing.assert_close(as_tuple[-1][0], hidden)
        model.config.output_hidden_states = True
        torch.testing.assert_close(model(input_ids).hidden_states[0], hidden)
    decoded = model(input_ids, latent=model.sample_prior(2), output_hidden_states=True)
    torch.testing.assert_close(model.lm_head(decoded.hidden_states[0]), decoded.logits)


# ----- inputs_embeds -----


def test_an_embedded_prompt_generates_as_its_ids(model):
    latent, mask = model.sample_prior(2), PROMPT.ne(PAD).long()
    options = dict(attention_mask=mask, latent=latent, max_new_tokens=5, return_dict_in_generate=True,
                   output_scores=True)
    from_ids = model.generate(PROMPT, **options)
    from_embeds = model.generate(inputs_embeds=model.get_input_embeddings()(PROMPT), **options)
    # as in transformers: the sequences hold the new tokens only, the prompt being embeddings
    assert torch.equal(from_embeds.sequences, from_ids.sequences[:, PROMPT.shape[1]:])
    for a, b in zip(from_embeds.scores, from_ids.scores, strict=True):
        torch.testing.assert_close(a, b)


def test_inputs_embeds_errors_say_what_to_pass(model):
    embeds = model.get_input_embeddings()(PROMPT)
    with pytest.raises(ValueError, match="inputs_embeds are decoder inputs, read after a latent: pass latent="):
        model(inputs_embeds=embeds)
    with pytest.raises(ValueError, match=r"inputs_embeds must have shape \(batch, length, 12\)"):
        model(inputs_embeds=embeds[..., :5], latent=model.sample_prior(2))
    with pytest.raises(ValueError, match="exactly one of them"):
        model(PROMPT, inputs_embeds=embeds, latent=model.sample_prior(2))


# ----- the cache -----


def decoder_widths(model):
    """The number of positions each decoder call reads, as a list filled while generating."""
    widths = []
    handle = model.decoder.register_forward_hook(lambda module, args, output: widths.append(args[0].shape[1]))
    return widths, handle


@pytest.mark.parametrize("mode", ["greedy", "sample"])
def test_continuing_from_the_returned_cache_equals_one_longer_generation(model, mode):
    latent, mask, options = model.sample_prior(2), PROMPT.ne(PAD).long(), MODES[mode]
    torch.manual_seed(0)
    whole = model.generate(PROMPT, attention_mask=mask, latent=latent, max_new_tokens=7, min_new_tokens=7, **options)
    torch.manual_seed(0)
    first = model.generate(PROMPT, attention_mask=mask, latent=latent, max_new_tokens=3, min_new_tokens=3,
                           return_dict_in_generate=True, **options)
    assert isinstance(first.cache, Cache) and isinstance(first.cache, DEMVAECache)
    assert first.cache.get_seq_length() == PROMPT.shape[1] + 2  # the last token is read by the next call
    widths, handle = decoder_widths(model)
    try:  # neither the latent nor the prompt's mask is given again: the cache and the pad ids say them
        continued = model.generate(first.sequences, cache=first.cache, max_new_tokens=4, min_new_tokens=4, **options)
    finally:
        handle.remove()
    assert widths == [1] * 4  # the state came from the cache: the prompt was not read again
    assert torch.equal(continued, whole)
    assert len(set(whole[:, PROMPT.shape[1]:].flatten().tolist())) > 2


def test_past_key_values_is_the_cache_under_its_former_name(model):
    latent = model.sample_prior(2)
    first = model.generate(latent=latent, max_new_tokens=2, min_new_tokens=2, return_dict_in_generate=True)
    state = first.cache.state.clone()
    step = model(first.sequences[:, -1:], latent=latent, cache=first.cache)
    with pytest.warns(FutureWarning, match="past_key_values"):
        again = model(first.sequences[:, -1:], latent=latent,
                      past_key_values=DEMVAECache(state, latent, first.cache.get_seq_length() - 1))
    torch.testing.assert_close(again.logits, step.logits)
    torch.testing.assert_close(again.cache.state, step.cache.state)


def test_cache_rows_follow_beams_and_batch_operations():
    state, latent = torch.arange(6.0).view(1, 3, 2), torch.arange(3.0).view(3, 1)
    cache = DEMVAECache(state, latent, seq_length=4)
    cache.reorder_cache(torch.tensor([2, 2, 0]))
    assert cache.state[0, :, 0].tolist() == [4.0, 4.0, 0.0] and cache.latent.flatten().tolist() == [2.0, 2.0, 0.0]
    cache.batch_select_indices(torch.tensor([True, False, True]))
    assert cache.batch_size == 2 and cache.latent.flatten().tolist() == [2.0, 0.0]
    cache.batch_repeat_interleave(2)
    assert cache.latent.flatten().tolist() == [2.0, 2.0, 0.0, 0.0] and cache.state.shape == (1, 4, 2)
    assert cache.get_seq_length() == 4 and not cache.is_compileable and not cache.is_croppable
    with pytest.raises(NotImplementedError, match="cannot be rewound"):
        cache.crop(-1)


def test_a_finished_rows_padding_keeps_its_state(model):
    """Continuing a batch in which a sentence has ended: its padding leaves its state as it is."""
    latent = model.sample_prior(2)
    cache = model(torch.tensor([[BOS, 5], [BOS, 6]]), latent=latent).cache
    before = cache.state.clone()
    model(torch.tensor([[7], [PAD]]), attention_mask=torch.tensor([[1, 1, 1], [1, 1, 0]]), cache=cache)
    torch.testing.assert_close(cache.state[:, 1], before[:, 1])
    assert not torch.allclose(cache.state[:, 0], before[:, 0])
    assert cache.get_seq_length() == 3


def test_a_cache_of_another_kind_is_refused(model):
    with pytest.raises(TypeError, match="cache must be the DEMVAECache .* got Tensor"):
        model(PROMPT, latent=model.sample_prior(2), cache=torch.zeros(1, 2, 12))


# ----- text tokenized with another vocabulary -----


@pytest.fixture
def warnings_of_the_model(caplog):
    caplog.set_level(logging.WARNING, logger="modeling_demvae.modeling_demvae")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "modeling_demvae.modeling_demvae"]


def test_a_mostly_unknown_prompt_is_warned_about_once(model, warnings_of_the_model):
    # words are the real tokens but <s> and </s>: 2 of 3 unknown (row 0), 1 of 2 (row 1, not more than half)
    prompt = torch.tensor([[PAD, BOS, UNK, UNK, 5], [BOS, UNK, 6, EOS, PAD]])
    model.generate(prompt, latent=model.sample_prior(2), max_new_tokens=4)
    assert warnings_of_the_model() == [
        "2 of the 3 words of 1 of the 2 sentence(s) of the prompt passed to generate() are unknown to this model's "
        "vocabulary (<unk>, id 3): the model was trained on another vocabulary. Tokenize with the model's own "
        "tokenizer; text it does not know decodes poorly."
    ]


def test_prompts_and_sentences_of_known_words_are_not_warned_about(model, warnings_of_the_model):
    model.generate(torch.tensor([[BOS, UNK, 6, EOS]]), latent=model.sample_prior(1), max_new_tokens=3)
    model.encode(PROMPT)
    model(PROMPT)
    assert warnings_of_the_model() == []


def test_encode_warns_once_per_call_and_corpus_passes_do_not(model, warnings_of_the_model):
    sentences = torch.tensor([[BOS, UNK, UNK, EOS], [BOS, UNK, 5, EOS], [BOS, UNK, PAD, PAD]])
    model.encode(sentences)
    assert len(warnings_of_the_model()) == 1 and "3 of the 3 words of 2 of the 3 sentence(s) passed to encode()" in (
        warnings_of_the_model()[0])
    # the package's passes over a corpus (its tokenizer's own <unk>: rare words, not another vocabulary) and the
    # objective (forward) do not warn: an evaluation would print a line per batch of short rare-word sentences
    model.encode(sentences, check_vocabulary=False)
    model(sentences)
    model.train()(sentences)
    metrics.encode_sentences(model.eval(), [[BOS, UNK, UNK, EOS], [BOS, UNK, UNK, UNK, EOS]])
    assert len(warnings_of_the_model()) == 1
