"""The DistilBERT text-classification tutorial with modeldiff, offline, as a script to copy.

Run: python examples/tutorial.py [OUT_DIR]
"""

import sys
from pathlib import Path

import torch
from transformers import DistilBertModel

import modeldiff
from modeldiff._pipeline import default_classifier
from modeldiff._render import save

out = Path(sys.argv[1] if len(sys.argv) > 1 else "tutorial-out")
out.mkdir(parents=True, exist_ok=True)
sentences = ["I've been waiting for a HuggingFace course my whole life.", "I hate this so much!"]

# 1. Two architectures from one config. The head: a seeded DistilBertForSequenceClassification
#    from DistilBertConfig() with labels NEGATIVE/POSITIVE, and the uncased tokenizer. (For your
#    own, use AutoTokenizer.from_pretrained(folder) -- not BertTokenizerFast(vocab_file=...),
#    which transformers 5 turns into a 5-token vocabulary.)
head, tokenizer = default_classifier()
with torch.device("meta"):  # structure needs no weights: build the base on meta
    base = DistilBertModel(head.config)
print(modeldiff.walk(base).summary(depth=2))
print(modeldiff.walk(head).summary(depth=2))

# 2. What the head adds: pre_classifier, classifier, dropout.
delta = modeldiff.diff(base, head)
print(delta)
print(modeldiff.head_delta(base, head).new_parameters)  # what from_pretrained would initialise

# 3. Diagrams.
for name, obj in (("base", base), ("head", head), ("delta", delta)):
    save(modeldiff.walk(obj) if name != "delta" else obj, out / f"{name}.svg")

# 4. The pipeline, step by step: tokens, ids, mask, logits, softmax, labels.
print(modeldiff.pipeline_steps(sentences, head, tokenizer))
before = modeldiff.classify(sentences, head, tokenizer)

# 5. save_pretrained -> from_pretrained, checked file by file and bit for bit.
report = modeldiff.roundtrip(head, workdir=out / "checkpoint")
print(report)
after = modeldiff.classify(sentences, str(out / "checkpoint"), tokenizer)
print("identical after reloading:", [(p.label, p.score) for p in before] ==
      [(p.label, p.score) for p in after])
