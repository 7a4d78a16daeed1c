"""The command line: a thin layer over the library's functions.

``modeldiff --help`` imports neither torch nor transformers: each command imports what it
needs when it runs. Exit status follows diff(1): 0 same, 1 different, 2 error.

Each command is a pair: ``_add_<name>(subparsers)`` declares its arguments and
``_cmd_<name>(args) -> int`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from modeldiff.errors import ModelDiffError

if TYPE_CHECKING:
    from modeldiff._render import Renderable

__all__ = ["main"]

TASK_CHOICES = ("base", "sequence-classification", "token-classification", "masked-lm",
                "causal-lm", "question-answering", "seq2seq-lm", "multiple-choice", "pretraining")


def _model_arg(p: argparse.ArgumentParser, name: str, help_text: str) -> None:
    p.add_argument(name, help=help_text + " (a checkpoint folder, a model_type such as "
                   "'distilbert', a printed-model .txt file, or a hub id)")


# -- summary --------------------------------------------------------------------------------
def _add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="print a model's structure as a table")
    _model_arg(p, "model", "the model")
    p.add_argument("--task", choices=TASK_CHOICES, help="which head to build (default: base, "
                   "or the architecture a folder's config.json names)")
    p.add_argument("--depth", type=int, default=None, help="cut the tree at this depth")
    p.add_argument("--unfold", action="store_true", help="list repeated layers one by one")
    p.add_argument("--json", action="store_true", help="print the graph as JSON")
    p.set_defaults(run=_cmd_summary)


def _cmd_summary(args: argparse.Namespace) -> int:
    from modeldiff._inputs import walk

    g = walk(args.model, task=args.task)
    print(g.to_json() if args.json else g.summary(depth=args.depth, fold=not args.unfold))
    return 0


# -- classify -------------------------------------------------------------------------------
def _top_k(text: str) -> int | None:
    if text == "all":
        return None
    message = f"expected a positive int or 'all', got {text!r}"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if value < 1:
        raise argparse.ArgumentTypeError(message)
    return value


def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="classify texts with a sequence-classification model",
                       description="Print the predicted label and score of each text. Without "
                       "--model, an offline DistilBERT with an untrained head is used: its "
                       "scores are not meaningful.")
    p.add_argument("texts", nargs="*", metavar="TEXT",
                   help="texts to classify (default: one per line from standard input)")
    p.add_argument("--model", help="a sequence-classification checkpoint folder or hub id "
                   "(default: the offline demo model)")
    p.add_argument("--top-k", type=_top_k, default=1, metavar="K",
                   help="how many labels to rank per text, or 'all' (default: 1)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per batch (default: 32)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.set_defaults(run=_cmd_classify)


def _cmd_classify(args: argparse.Namespace) -> int:
    texts = list(args.texts)
    if not texts:
        if sys.stdin.isatty():
            print("modeldiff classify: error: give texts as arguments or one per line on "
                  "standard input", file=sys.stderr)
            return 2
        texts = [line.rstrip("\n") for line in sys.stdin]
    from modeldiff._pipeline import UNTRAINED_NOTE, classify

    preds = classify(texts, args.model, top_k=args.top_k, batch_size=args.batch_size)
    if preds and preds[0].untrained:
        print(f"modeldiff classify: note: {UNTRAINED_NOTE}", file=sys.stderr)
    if args.json:
        _print_json([{"text": p.text, "label": p.label, "score": p.score,
                      "ranking": [{"label": lab, "score": sc} for lab, sc in p.ranking],
                      "untrained": p.untrained} for p in preds])
        return 0
    width = max((len(lab) for p in preds for lab, _ in p.ranking), default=0)
    for p in preds:
        if args.top_k == 1:
            print(f"{p.label:<{width}}  {p.score:.4f}  {p.text}")
        else:
            print(p.text)
            for lab, sc in p.ranking:
                print(f"  {lab:<{width}}  {sc:.4f}")
    return 0


# -- render -------------------------------------------------------------------------------
def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="draw a model, or the difference of two, with Graphviz",
                       description="Write a diagram of MODEL, or of what changed from A to B "
                       "when two models are given. The format follows the extension of -o: "
                       ".dot (no Graphviz needed), .svg, .png, .pdf.")
    p.add_argument("models", nargs="+", metavar="MODEL", help="one model to draw, or two "
                   "(A B) to draw their difference (a checkpoint folder, a model_type such "
                   "as 'distilbert', a printed-model .txt file, or a hub id)")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="where to write: model.svg, model.png, model.pdf or model.dot")
    p.add_argument("--task", choices=TASK_CHOICES, help="which head to build (default: base, "
                   "or the architecture a folder's config.json names); with two models it "
                   "applies to the second")
    p.add_argument("--depth", type=int, default=None, help="cut the tree at this depth")
    p.add_argument("--unfold", action="store_true", help="draw repeated layers one by one")
    p.set_defaults(run=_cmd_render)


def _cmd_render(args: argparse.Namespace) -> int:
    if len(args.models) > 2:
        print("modeldiff render: error: give one model, or two to draw their difference",
              file=sys.stderr)
        return 2
    from modeldiff._inputs import walk
    from modeldiff._render import save

    obj: Renderable
    if len(args.models) == 1:
        obj = walk(args.models[0], task=args.task)
    else:
        from modeldiff._compare import diff

        obj = diff(walk(args.models[0]), walk(args.models[1], task=args.task))
    out = save(obj, args.output, depth=args.depth, fold_repeats=not args.unfold)
    print(f"wrote {out}")
    return 0


# -- diff -----------------------------------------------------------------------------------
def _add_diff(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="the structural difference of two models",
                       description="Print what differs between A and B as a +/-/~ tree. Exit "
                                   "status 0 when they are the same, 1 when different, 2 on "
                                   "error (like diff(1)).")
    _model_arg(p, "a", "the first model")
    _model_arg(p, "b", "the second model")
    p.add_argument("--task", choices=TASK_CHOICES,
                   help="which head to build for a side given by name or folder")
    p.add_argument("--task-a", choices=TASK_CHOICES, help="--task for A only")
    p.add_argument("--task-b", choices=TASK_CHOICES, help="--task for B only")
    p.add_argument("--align", default="auto",
                   help="'auto' (default), a module path to align at, or 'none' for path to path")
    p.add_argument("--weights", action="store_true",
                   help="also compare weight values (folders or real models only)")
    p.add_argument("--json", action="store_true", help="print the diff as JSON")
    p.set_defaults(run=_cmd_diff)


def _cmd_diff(args: argparse.Namespace) -> int:
    from modeldiff._compare import diff

    align = None if args.align == "none" else args.align
    result = diff(args.a, args.b, align=align, weights=args.weights,
                  task=(args.task_a or args.task, args.task_b or args.task))
    print(result.to_json() if args.json else result)
    return 1 if result else 0


# -- roundtrip ------------------------------------------------------------------------------
def _add_roundtrip(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("roundtrip", help="save_pretrained, from_pretrained, and compare",
                       description="Save MODEL with save_pretrained into a temporary folder, "
                                   "load it back and compare structure, state dict, config and "
                                   "outputs. Exit status 0 when it survives intact, 1 when "
                                   "something changed, 2 on error.")
    p.add_argument("model", help="a checkpoint folder (loaded with its weights) or a model_type "
                   "such as 'distilbert' (built from the default config with seeded random "
                   "weights on CPU)")
    p.add_argument("--task", choices=TASK_CHOICES, help="which head to build for a model_type "
                   "(default: base; a folder uses the class its config.json names)")
    p.add_argument("--max-shard-size", default=None,
                   help="passed to save_pretrained, e.g. 200MB, to check a sharded save")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_cmd_roundtrip)


def _cmd_roundtrip(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from modeldiff._inputs import build_model
    from modeldiff._roundtrip import roundtrip

    folder = Path(args.model).expanduser()
    tokenizer = None
    if folder.is_dir():
        import transformers

        from modeldiff._walk.checkpoint import read_config_json

        archs = read_config_json(folder).get("architectures") or ()
        cls = getattr(transformers, archs[0], None) if archs else None
        if args.task is not None or cls is None:
            from modeldiff._inputs import TASKS

            cls = getattr(transformers, TASKS[args.task or "base"])
        model = cls.from_pretrained(folder)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError, TypeError, KeyError, ImportError):
            # a folder without tokenizer files: seeded token ids instead. transformers 4.x
            # falls through to its sentencepiece converters there and raises ImportError
            # when protobuf is missing (modeldiff._compat.TOKENIZER_PROBE_IMPORT_ERROR_UNTIL)
            tokenizer = None
    else:
        from transformers import AutoConfig

        from modeldiff._inputs import model_types

        if args.model not in model_types():
            from modeldiff.errors import UnknownModelTypeError
            from modeldiff.kinds import suggest

            raise UnknownModelTypeError(args.model,
                                        suggestions=suggest(args.model, model_types()))
        torch.manual_seed(0)
        model = build_model(AutoConfig.for_model(args.model), task=args.task, device="cpu")
    report = roundtrip(model, tokenizer=tokenizer, max_shard_size=args.max_shard_size)
    print(report.to_json() if args.json else report)
    return 0 if report.ok else 1


# -- compare --------------------------------------------------------------------------------
def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare two checkpoints tensor by tensor",
                       description="Compare two checkpoint folders (single or sharded "
                                   "safetensors, or .bin) or two weight files, streamed. Exit "
                                   "status 0 when the same (within --rtol/--atol), 1 when "
                                   "different, 2 on error.")
    p.add_argument("a", help="the first checkpoint folder or weight file")
    p.add_argument("b", help="the second checkpoint folder or weight file")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(run=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from modeldiff._walk.tensors import compare_checkpoints

    result = compare_checkpoints(args.a, args.b, rtol=args.rtol, atol=args.atol)
    print(result.to_json() if args.json else result)
    return 1 if result else 0


# -- demo -----------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="replay the DistilBERT tutorial end to end, offline")
    p.add_argument("--out", default="modeldiff-demo",
                   help="folder for the diagrams and the saved checkpoint (default: %(default)s)")
    p.set_defaults(run=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from modeldiff._demo import run_demo

    return 0 if run_demo(args.out).identical else 1


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_summary,
    _add_demo,
    _add_diff,
    _add_classify,
    _add_render,
    _add_roundtrip,
    _add_compare,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldiff",
        description="Look inside PyTorch and Hugging Face transformers models: structure, "
                    "diffs, diagrams, save/load round-trips.",
        epilog="Exit status: 0 same / success, 1 different, 2 error.")
    from modeldiff import __version__

    parser.add_argument("--version", action="version", version=f"modeldiff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except ModelDiffError as e:
        print(f"modeldiff {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `modeldiff summary x | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=1))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
