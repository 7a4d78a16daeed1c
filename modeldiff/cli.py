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
from pathlib import Path
from typing import TYPE_CHECKING

from modeldiff.errors import ModelDiffError

if TYPE_CHECKING:
    from modeldiff._render import Renderable

__all__ = ["main"]

TASK_CHOICES = ("base", "sequence-classification", "token-classification", "masked-lm",
                "causal-lm", "question-answering", "seq2seq-lm", "multiple-choice", "pretraining")
# load-report takes every head family the input layer builds (modeldiff._inputs.TASKS)
LOAD_TASK_CHOICES = (*TASK_CHOICES, "next-sentence-prediction", "image-classification",
                     "semantic-segmentation", "object-detection", "backbone",
                     "image-text-to-text", "audio-classification", "ctc", "speech-seq2seq")


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
                   help="also compare weight values (folders or real models only): the "
                        "modules that changed, most moved first, and a verdict")
    p.add_argument("--top", type=int, default=20, metavar="N",
                   help="with --weights: show the N most changed modules (default 20)")
    p.add_argument("--all", action="store_true", help="with --weights: show every changed module")
    p.add_argument("--json", action="store_true", help="print the diff as JSON")
    p.set_defaults(run=_cmd_diff)


def _cmd_diff(args: argparse.Namespace) -> int:
    from modeldiff._compare import diff

    align = None if args.align == "none" else args.align
    from modeldiff._core.format import format_diff

    result = diff(args.a, args.b, align=align, weights=args.weights,
                  task=(args.task_a or args.task, args.task_b or args.task))
    if args.json:
        print(result.to_json())
        return 1 if result else 0
    print(format_diff(result, top=None if args.all else max(args.top, 0)))
    if not args.weights and all(_has_values(x) for x in (args.a, args.b)):
        print(f"(weight values not compared: {args.a} and {args.b} are checkpoints; "
              "`modeldiff diff A B --weights` compares them, `modeldiff report A B -o "
              "report.html` draws what moved)")
    return 1 if result else 0


def _has_values(arg: str) -> bool:
    """A checkpoint folder or weight file: something with values, not only a structure."""
    p = Path(arg).expanduser()
    if p.is_dir():
        return any(p.glob("*.safetensors")) or any(p.glob("*.bin"))
    return p.suffix in (".safetensors", ".bin") and p.is_file()


# -- report ---------------------------------------------------------------------------------
def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="what fine-tuning moved: one self-contained HTML report",
                       description="Compare A and B, structure and weight values, and write one "
                                   "HTML file (inline SVG, no network): the verdict, the "
                                   "diagram, the load report, a heatmap of relative change, "
                                   "the top changed modules. Exit status 0 when A and B are "
                                   "the same, 1 when different, 2 on error.")
    _model_arg(p, "a", "the first model (before)")
    _model_arg(p, "b", "the second model (after)")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write the HTML report")
    p.add_argument("--task", choices=TASK_CHOICES,
                   help="which head to build for a side given by name or folder")
    p.add_argument("--top", type=int, default=20, metavar="N",
                   help="changed modules in the top table (default 20)")
    p.add_argument("--json", action="store_true",
                   help="print the comparison (structure, weights, verdict) as JSON")
    p.set_defaults(run=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    if not args.output and not args.json:
        print("modeldiff report: error: give -o report.html, --json, or both", file=sys.stderr)
        return 2
    out = Path(args.output).expanduser() if args.output else None
    if out is not None:
        parent = out.parent if str(out.parent) else Path(".")
        if out.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
            why = ("is a folder" if out.is_dir() else "has no folder to go in"
                   if not parent.is_dir() else "is in a folder that is not writable")
            print(f"modeldiff report: error: output {out} {why}: pass a file path in an "
                  "existing, writable folder", file=sys.stderr)
            return 2
    from modeldiff._compare import diff
    from modeldiff._render import write_atomic
    from modeldiff._report import report_html

    result = diff(args.a, args.b, weights=True, task=args.task)
    if out is not None:
        write_atomic(out, report_html(result, top=max(args.top, 1),
                                      title=f"{args.a} -> {args.b}").encode())
        # with --json, stdout is the JSON alone
        print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(result.to_json())
    return 1 if result else 0


# -- load-report ----------------------------------------------------------------------------
def _add_load_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load-report", help="what from_pretrained will report, read from headers",
        description="Predict transformers' LOAD REPORT (MISSING, UNEXPECTED, MISMATCH, "
                    "CONVERSION) for loading CHECKPOINT into a class, from its safetensors "
                    "headers; no weight is read. Exit 0 when everything loads or only an "
                    "expected new head is missing (or an unused head of another task), 1 "
                    "otherwise (--strict: on any status), 2 on error.")
    p.add_argument("checkpoint", help="the checkpoint folder save_pretrained wrote")
    p.add_argument("model", nargs="?",
                   help="the target: a model_type (with --task for a head), a transformers "
                        "class name, or a checkpoint folder whose class to load into")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--task", choices=LOAD_TASK_CHOICES,
                       help="load into the auto class of this task")
    which.add_argument("--class", dest="cls", metavar="CLASS",
                       help="load into this transformers class, e.g. BertForQuestionAnswering")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 on any status, expected or not")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_cmd_load_report)


def _cmd_load_report(args: argparse.Namespace) -> int:
    from modeldiff._loading import load_report

    target = args.cls or args.model
    task = args.task
    if target is None:
        if task is None:
            print("modeldiff load-report: error: name the target: --task T, --class C or "
                  "a MODEL", file=sys.stderr)
            return 2
        target, task = task, None
    elif os.path.isdir(target):
        from modeldiff._inputs import walk

        target = walk(target, task=task)
    report = load_report(args.checkpoint, target, task=task)
    print(report.to_json() if args.json else report)
    if args.strict:
        return 1 if report else 0
    return 0 if report.ok else 1


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
    from modeldiff._roundtrip import roundtrip

    report = roundtrip(args.model, task=args.task, max_shard_size=args.max_shard_size)
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
    from modeldiff._inputs import output_folder

    return 0 if run_demo(output_folder(args.out, argument="--out")).identical else 1


# -- trace, memory ---------------------------------------------------------------------------
def _add_trace(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="shapes, FLOPs and activation memory of one forward",
                       description="Run one forward on the meta device (no weights, no "
                       "compute) and print output shape, parameters and FLOPs per module.")
    _model_arg(p, "model", "the model")
    p.add_argument("--seq", type=int, default=128, help="sequence length (default: 128)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default: 1)")
    p.add_argument("--task", choices=TASK_CHOICES, help="which head to build (default: base, "
                   "or the architecture a folder's config.json names)")
    p.add_argument("--dtype", help="build the model in this dtype, e.g. bfloat16")
    p.add_argument("--depth", type=int, default=3, help="cut the table at this depth "
                   "(default: 3)")
    p.add_argument("--json", action="store_true", help="print the trace as JSON")
    p.set_defaults(run=_cmd_trace)


def _cmd_trace(args: argparse.Namespace) -> int:
    from modeldiff._trace import trace

    t = trace(args.model, batch=args.batch, seq=args.seq, task=args.task, dtype=args.dtype)
    if args.json:
        print(t.to_json())
        return 0
    print(t.headline())
    print()
    print(t.summary(depth=args.depth))
    for a in t.assumptions:
        print(f"assumed {a.assumed} at {a.site}")
    return 0


def _add_memory(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("memory", help="memory to load and to train a model, per dtype",
                       description="accelerate estimate-memory's table: largest layer, total "
                       "size and training with Adam, for float32, float16, bfloat16, int8 "
                       "and int4. The model is built on the meta device.")
    _model_arg(p, "model", "the model")
    p.add_argument("--task", choices=TASK_CHOICES, help="which head to build")
    p.set_defaults(run=_cmd_memory)


def _cmd_memory(args: argparse.Namespace) -> int:
    from modeldiff._core.trace import Trace
    from modeldiff._trace import build, memory_rows

    model = build(args.model, task=args.task)
    from modeldiff._inputs import walk

    t = Trace(graph=walk(model), modules=(), memory=memory_rows(model))
    print(t.memory_table())
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_summary,
    _add_demo,
    _add_diff,
    _add_load_report,
    _add_report,
    _add_classify,
    _add_render,
    _add_roundtrip,
    _add_compare,
    _add_trace,
    _add_memory,
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
