"""What a transformers user does with a causal LM, on DEM-VAE: prompts in `generate` and the text-generation
pipeline, resizing the vocabulary, export and compile, `return_dict`, gradient checkpointing, left padding."""

import copy

import pytest
import torch
from conftest import tiny_batch, tiny_model
from transformers import pipeline
from transformers.exporters.exporter_dynamo import register_cache_pytrees_for_model

from modeling_demvae import DEMVAEForGeneration, build_tokenizer, networks

TEXTS = ["the company said it expects profit to rise", "the dog sat on the mat", "prices fell again today"]


@pytest.fixture
def tokenizer():
    return build_tokenizer(TEXTS)


FAMILIES = {"gaussian": {}, "categorical": {"prior_family": "categorical", "categorical_size": 3}}


@pytest.fixture(params=sorted(FAMILIES))
def model(tokenizer, request):
    return tiny_model(vocab_size=len(tokenizer), initializer_range=0.5, **FAMILIES[request.param]).eval()


def left_padded(rows, pad=0):
    """(ids, mask) of token lists, left-padded."""
    width = max(map(len, rows))
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    return ids, (torch.arange(width) >= width - torch.tensor([len(r) for r in rows]).unsqueeze(1)).long()


def continuation(model, prompt, latent, **options):
    """The tokens generated after an unpadded one-row prompt from a given latent."""
    prompt = torch.tensor([prompt])
    return model.generate(prompt, latent=latent, **options)[0, prompt.shape[1]:].tolist()


# ----- generate with prompts -----


def test_generate_takes_input_ids_and_tokenizer_output(model, tokenizer):
    batch = tokenizer(["the company"], return_tensors="pt")
    torch.manual_seed(3)
    from_tokenizer = model.generate(**batch, max_new_tokens=5)
    torch.manual_seed(3)
    positional = model.generate(batch["input_ids"], max_new_tokens=5)
    assert torch.equal(from_tokenizer, positional)
    assert from_tokenizer[0, :3].tolist() == batch["input_ids"][0].tolist()
    with pytest.raises(ValueError, match="inputs or as input_ids=, not both"):
        model.generate(batch["input_ids"], input_ids=batch["input_ids"])


def test_a_batch_of_prompts_gets_one_latent_per_row(model, tokenizer):
    """Each row continues its own prompt from its own latent, as if generated alone (left padding included)."""
    batch = tokenizer(["the company said", "the dog"], return_tensors="pt", padding=True)
    torch.manual_seed(5)
    out = model.generate(**batch, component=[1, 2, 0], max_new_tokens=6, min_new_tokens=6)
    torch.manual_seed(5)
    latent = model.sample_prior(2, component=[1, 2, 0])
    assert out.shape == (2, batch["input_ids"].shape[1] + 6)
    for row, text in enumerate(["the company said", "the dog"]):
        alone = continuation(model, tokenizer(text)["input_ids"], latent[row: row + 1], max_new_tokens=6,
                             min_new_tokens=6)
        assert out[row, -6:].tolist() == alone


def test_num_return_sequences_draws_latents_per_prompt(model, tokenizer):
    """Under num_return_sequences=n each prompt gets n latents of its own, its rows adjacent (greedy decoding too)."""
    batch = tokenizer(["the company said", "the dog"], return_tensors="pt", padding=True)
    torch.manual_seed(2)
    out = model.generate(**batch, num_return_sequences=3, max_new_tokens=5, min_new_tokens=5)
    torch.manual_seed(2)
    latent = model.sample_prior(6)
    assert out.shape[0] == 6
    for row in range(6):
        text = ["the company said", "the dog"][row // 3]
        alone = continuation(model, tokenizer(text)["input_ids"], latent[row: row + 1], max_new_tokens=5,
                             min_new_tokens=5)
        assert out[row, -5:].tolist() == alone
    assert len({tuple(r) for r in out[:3, -5:].tolist()}) > 1  # the latents differ, so do the sentences
    beams = model.generate(**batch, num_return_sequences=2, num_beams=3, max_new_tokens=4)
    assert beams.shape[0] == 4


def test_prompt_rows_must_match_the_sentences_asked_for(model, tokenizer):
    batch = tokenizer(["the company", "the dog"], return_tensors="pt", padding=True)
    with pytest.raises(ValueError, match="the prompt has 2 rows but 3 sentences"):
        model.generate(**batch, num_samples=3)
    one = tokenizer(["the company"], return_tensors="pt")
    assert model.generate(**one, num_samples=4, max_new_tokens=3).shape[0] == 4  # one prompt for all


def test_left_padded_prompt_scores_equal_the_unpadded_prompts(model, tokenizer):
    """The attention mask is honoured while decoding: padding leaves the GRU state as it is."""
    prompt = tokenizer("the company said")["input_ids"]
    latent = model.sample_prior(1)
    ids, mask = left_padded([prompt], pad=0)
    padded_ids, padded_mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1), F_pad_mask(mask, 3)
    options = dict(max_new_tokens=4, output_scores=True, return_dict_in_generate=True)
    unpadded = model.generate(ids, latent=latent, **options)
    padded = model.generate(padded_ids, attention_mask=padded_mask, latent=latent, **options)
    for a, b in zip(unpadded.scores, padded.scores, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    uncached = model.generate(padded_ids, attention_mask=padded_mask, latent=latent, use_cache=False, **options)
    for a, b in zip(unpadded.scores, uncached.scores, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def F_pad_mask(mask, width):  # noqa: N802
    return torch.cat([torch.zeros(mask.shape[0], width, dtype=mask.dtype), mask], 1)


def test_prepare_inputs_for_generation_passes_extra_kwargs_through(model):
    latent = model.sample_prior(2)
    inputs = model.prepare_inputs_for_generation(torch.ones(2, 3, dtype=torch.long), latent=latent, extra="x",
                                                 use_cache=True)
    assert inputs["extra"] == "x" and inputs["latent"] is latent and inputs["input_ids"].shape == (2, 3)
    cached = model.prepare_inputs_for_generation(torch.ones(2, 3, dtype=torch.long), latent=latent, cache=latent,
                                                 next_sequence_length=1, extra="x")
    assert cached["input_ids"].shape == (2, 1) and cached["extra"] == "x" and "next_sequence_length" not in cached


# ----- the text-generation pipeline -----


def test_text_generation_pipeline(model, tokenizer, monkeypatch):
    """With a prompt, without one and on a batch, `generate_kwargs={"component": ...}` reaching `generate`: each
    text is the decoded `generate` of the same prompts from the latents the pipeline's call drew."""
    drawn = []
    sample_prior = model.sample_prior
    monkeypatch.setattr(model, "sample_prior", lambda n, component=None, **options: drawn.append((
        component, sample_prior(n, component, **options))) or drawn[-1][1])
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    component = [1, 2, 0]
    options = dict(max_new_tokens=5, min_new_tokens=5)

    def generated(prompts, **extra):
        outputs = generator(prompts, generate_kwargs={"component": component}, **options, **extra)
        assert drawn[-1][0] == component
        return outputs

    text = generated("the company")[0]["generated_text"]
    expected = model.generate(**tokenizer(["the company"], return_tensors="pt"), latent=drawn[-1][1], **options)
    assert text == tokenizer.decode(expected[0], skip_special_tokens=True)  # words spaced, the prompt kept
    assert text.startswith("the company ") and expected.shape[1] == 3 + 5  # <s> the company, then 5 tokens

    no_prompt = generated("")[0]["generated_text"]
    expected = model.generate(latent=drawn[-1][1], **options)
    # the prompt is only <s>: the pipeline decodes the continuation, which starts with a space
    assert no_prompt == " " + tokenizer.decode(expected[0], skip_special_tokens=True)

    prompts = ["the company said", "the dog", "prices"]
    batched = generated(prompts, batch_size=3)
    expected = model.generate(**tokenizer(prompts, return_tensors="pt", padding=True), latent=drawn[-1][1], **options)
    assert [out[0]["generated_text"] for out in batched] == tokenizer.batch_decode(expected, skip_special_tokens=True)

    several = generated("the dog", num_return_sequences=2)
    assert len(several) == 2 and all(s["generated_text"].startswith("the dog ") for s in several)
    assert drawn[-1][1].shape[0] == 2  # a latent for each returned sequence


# ----- resizing, return_dict, checkpointing -----


def test_resizing_covers_the_encoder_and_the_resized_model_saves_and_loads(tmp_path):
    model = tiny_model().eval()
    old = {name: p.detach().clone() for name, p in model.named_parameters() if "embedding" in name or "lm_head" in name}
    model.resize_token_embeddings(50)
    assert model.encoder.embedding.num_embeddings == model.decoder.embedding.num_embeddings == 50
    assert model.lm_head.out_features == 50 and model.config.vocab_size == 50
    for name, before in old.items():
        torch.testing.assert_close(dict(model.named_parameters())[name][: before.shape[0]], before)
    input_ids = torch.tensor([[1, 45, 49, 2], [1, 47, 2, 0]])
    mask = input_ids.ne(0).long()
    model.config.deterministic_eval = True
    expected = model(input_ids, mask).logits
    model.save_pretrained(tmp_path)
    loaded = DEMVAEForGeneration.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(input_ids, mask).logits, expected)


def test_return_dict_false_gives_the_tuple_of_fields():
    model = tiny_model(deterministic_eval=True).eval()
    input_ids, mask = tiny_batch()
    as_dict = model(input_ids, mask)
    as_tuple = model(input_ids, mask, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_dict.to_tuple())
    for a, b in zip(as_tuple, as_dict.to_tuple(), strict=True):
        torch.testing.assert_close(a, b)
    model.config.return_dict = False
    assert isinstance(model(input_ids, mask), tuple)
    decoded = model(input_ids, latent=model.sample_prior(3), return_dict=False)
    assert isinstance(decoded, tuple) and decoded[0].shape == (3, 6, model.config.vocab_size)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(use_reentrant, monkeypatch):
    """Both GRU layers (the encoder's pair, the decoder's) recompute their activations in the backward pass."""
    assert DEMVAEForGeneration.supports_gradient_checkpointing
    model = tiny_model(dropout=0.3).train()
    calls = []
    for name in ("run_grus", "run_gru"):
        run = getattr(networks, name)
        monkeypatch.setattr(networks, name, lambda *args, run=run, name=name: calls.append(name) or run(*args))
    input_ids, mask = tiny_batch()

    def gradients():
        model.zero_grad()
        torch.manual_seed(0)
        model(input_ids, mask).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    assert calls == ["run_grus", "run_gru"]
    with pytest.warns(FutureWarning, match="activation_checkpointing_enable"):  # v5's name for it; both work
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
    assert model.is_activation_checkpointing
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys() == {name for name, p in model.named_parameters() if p.requires_grad}
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)
    assert calls[2:] == ["run_grus", "run_gru", "run_gru", "run_grus"]  # forward, and again in the backward pass


# ----- padding on either side -----


def test_left_and_right_padding_give_the_same_posterior_and_loss():
    """A left-padded mask is not a length: each sentence is read the same, whichever side it is padded on."""
    model = tiny_model(deterministic_eval=True).eval()
    right_ids, right_mask = tiny_batch()
    rows = [row[: int(m.sum())].tolist() for row, m in zip(right_ids, right_mask)]
    left_ids, left_mask = left_padded(rows)
    right, left = model(right_ids, right_mask), model(left_ids, left_mask)
    torch.testing.assert_close(left.posterior_mean, right.posterior_mean)
    torch.testing.assert_close(left.component_probs, right.component_probs)
    torch.testing.assert_close(left.loss, right.loss)
    for row, tokens in enumerate(rows):  # logits sit at each token's own position
        n = len(tokens)
        torch.testing.assert_close(left.logits[row, -n:], right.logits[row, :n])
    torch.testing.assert_close(model.encode(left_ids, left_mask).mean, model.encode(right_ids, right_mask).mean)


# ----- export and compile -----


class Forward(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class DecodeStep(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, latent, cache):
        out = self.model(input_ids=input_ids, latent=latent, cache=cache, use_cache=True)
        return out.logits, out.cache


@pytest.mark.filterwarnings("ignore:The tensor attributes")  # nn.GRU refreshes its weight list while traced
def test_export_of_forward_and_of_the_decode_step():
    model = tiny_model(deterministic_eval=True).eval()
    input_ids, mask = tiny_batch()
    exported = torch.export.export(Forward(model), (input_ids, mask)).module()
    torch.testing.assert_close(exported(input_ids, mask), model(input_ids, mask).logits)
    empty = mask.clone()
    empty[2] = 0
    with pytest.raises(RuntimeError, match="empty row"):  # the check is in the graph
        exported(input_ids, empty)
    with pytest.raises(ValueError, match="empty row"):  # and eager calls keep their ValueError
        model(input_ids, empty)

    # the decode step takes and returns the DEMVAECache, registered for export as transformers' exporter does
    register_cache_pytrees_for_model(model)
    latent = model.sample_prior(3)
    with torch.no_grad():
        cache = model(input_ids[:, :2], latent=latent).cache
    step = torch.export.export(DecodeStep(model), (input_ids[:, 2:3], latent, copy.deepcopy(cache))).module()
    (logits, exported_cache), (expected_logits, expected_cache) = (
        decode(input_ids[:, 2:3], latent, copy.deepcopy(cache)) for decode in (step, DecodeStep(model)))
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(exported_cache.state, expected_cache.state)
    assert exported_cache.get_seq_length() == expected_cache.get_seq_length() == 3


def test_compile_fullgraph():
    """One graph, the empty-row check included (Dynamo traces GRUs when `allow_rnn` is on)."""
    model = tiny_model(deterministic_eval=True).eval()
    input_ids, mask = tiny_batch()
    torch._dynamo.reset()
    with torch._dynamo.config.patch(allow_rnn=True):
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        torch.testing.assert_close(compiled(input_ids, mask).logits, model(input_ids, mask).logits)
        empty = mask.clone()
        empty[1] = 0
        with pytest.raises(RuntimeError, match="empty row"):
            compiled(input_ids, empty)


def test_the_common_tests_say_why_they_cannot_be_had(tmp_path, monkeypatch):
    """Without the package index the common-tests module skips with this reason, instead of failing."""
    from hf_common_tests import common_tests_module

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(RuntimeError, match=r"pip download of the transformers \S+ sdist failed: .*transformers=="):
        common_tests_module()
    assert not (tmp_path / "demvae").exists() or not any((tmp_path / "demvae").iterdir())  # nothing half-written
