"""The FAIR-Play protocol in one command: per split, train Stage 1, dump the test mels, render, evaluate; then
the papers' table (each split, the mean over splits ± standard error, the mono copy beside it).

    python -m DiffBinaural.protocol --data_root data/fairplay --splits 5split --out runs/fairplay \
        [--config base] [--num_gpus 8] [--train_args "--max_steps 20000"] [--test_args "--steps 25"]

``--splits``: ``5split`` (PseudoBinaural's scene-disjoint ``new_splits/split1..5``), ``10split`` (the
original ``splits/split1..10``), or indices such as ``1,3`` of ``--split_set`` (default: ``5split`` when
``new_splits/`` exists). ``--data_root`` is what ``prepare_fairplay.py`` writes, or any FAIR-Play layout
(the synthetic one too). Every step is the user's own script in a subprocess, logged to
``{out}/{set}_{k}/{step}.log`` (e.g. ``5split_1/train.log``); a finished step leaves ``{step}.done`` there
(its command line) and is skipped when the same command is run again, and a killed training continues
from its last checkpoint (``--resume``). Outputs: ``{out}/{set}_{k}/metrics.json`` (the JSONs
``evaluate.py --protocol fairplay --results`` reads),
``{out}/table.md`` and ``{out}/table.json`` (the table, with the run record of every split: commit,
dirty flag, flags), ``{out}/protocol.json`` (this command's own record).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys

from binaural_core.atomic import atomic_output
from binaural_core.audio import BadInputError, cli_main
from binaural_core.checkpoint import atomic_write_text
from binaural_core.run_record import git_state, read_run_record
from DiffBinaural.dataset import layout

STEPS = ("train", "dump", "render", "evaluate")
SPLIT_SETS = {"5split": ("new_splits", 5), "10split": (layout.FP_SPLITS_DIR, 10)}
HERE = os.path.dirname(os.path.abspath(__file__))


def split_lists(data_root: str, splits: str, split_set: str | None) -> list[tuple[str, dict[str, str]]]:
    """``[(name, {"train": path, "val": path, "test": path})]`` of the chosen splits (``.txt``, else ``.h5``);
    ``name`` (``5split_1``, ``10split_3``) names the run, so the two sets never share results."""
    if splits in SPLIT_SETS:
        split_set, indices = splits, list(range(1, SPLIT_SETS[splits][1] + 1))
    else:
        try:
            indices = [int(k) for k in splits.split(",")]
        except ValueError:
            raise BadInputError(None, f"--splits {splits!r}: 5split, 10split or indices such as 1,3") from None
        split_set = split_set or ("5split" if os.path.isdir(os.path.join(data_root, "new_splits")) else "10split")
    folder = SPLIT_SETS[split_set][0]
    out = []
    for k in indices:
        lists = {}
        for split in ("train", "val", "test"):
            candidates = [os.path.join(data_root, folder, f"split{k}", f"{split}{ext}") for ext in (".txt", ".h5")]
            found = next((c for c in candidates if os.path.isfile(c)), None)
            if found is None:
                raise BadInputError(candidates[0], f"split {k} of {split_set}: list not found (.txt or .h5); "
                                                   "prepare_fairplay.py writes them")
            lists[split] = found
        out.append((f"{split_set}_{k}", lists))
    return out


def commands(run: str, lists: dict[str, str], args) -> dict[str, list[str]]:
    """The four command lines of split ``run``."""
    py = sys.executable
    split_dir = os.path.join(args.out, run)
    gt = os.path.join(args.data_root, "binaural16k")
    gt = gt if os.path.isdir(gt) else os.path.join(args.data_root, layout.FP_AUDIO_DIR)
    common = ["--data_root", args.data_root, "--ckpt", os.path.join(args.out, "ckpt"), "--id", run]
    train = [py, os.path.join(HERE, "train_fairplay.py"), *common, "--list_train", lists["train"], "--list_val",
             lists["val"], "--num_gpus", str(args.num_gpus), "--resume"]
    train += ["--config", args.config] if args.config else []
    return {
        "train": train + shlex.split(args.train_args),
        "dump": [py, os.path.join(HERE, "test_fairplay.py"), *common, "--mode", "test", "--list_test", lists["test"],
                 "--output_dir", os.path.join(split_dir, "mels"), *shlex.split(args.test_args)],
        "render": [py, os.path.join(HERE, "render.py"), "--mel_dir", os.path.join(split_dir, "mels"), "--split",
                   "test", "--mono_dir", os.path.join(args.data_root, layout.FP_AUDIO_DIR), "--output_dir",
                   os.path.join(split_dir, "wav")],
        "evaluate": [py, os.path.join(HERE, "evaluate.py"), "--pred_dir", os.path.join(split_dir, "wav"), "--gt_dir",
                     gt, "--out", os.path.join(split_dir, "metrics.json"), "--protocol", "fairplay",
                     "--workers", str(args.eval_workers), *([] if args.pesq else ["--no-pesq"])],
    }


def run_split(run: str, lists: dict[str, str], args) -> str:
    """Run what is not done yet of split ``run``; returns its metrics JSON. A step counts as done when its
    ``.done`` file holds the same command line; a step that runs makes every later step run again."""
    split_dir = os.path.join(args.out, run)
    os.makedirs(split_dir, exist_ok=True)
    redo = False
    for step, cmd in commands(run, lists, args).items():
        done = os.path.join(split_dir, f"{step}.done")
        if not redo and os.path.isfile(done):
            with open(done) as f:
                if f.read().strip() == shlex.join(cmd):
                    print(f"{run}: {step} done, skipped", flush=True)
                    continue
            if step == "train":
                raise BadInputError(done, f"{run} was trained with other flags (this file holds its command); "
                                          "give another --out, or delete the split's folder to retrain")
        if not redo:  # its outputs change: this step and every later one are stale until they run again
            for later in STEPS[STEPS.index(step):]:
                stale = os.path.join(split_dir, f"{later}.done")
                if os.path.isfile(stale):
                    os.remove(stale)
        redo = True
        print(f"{run}: {step} ... (log: {os.path.join(split_dir, step + '.log')})", flush=True)
        with open(os.path.join(split_dir, f"{step}.log"), "a") as log:
            log.write("$ " + shlex.join(cmd) + "\n")
            log.flush()
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
        if code != 0:
            raise BadInputError(os.path.join(split_dir, f"{step}.log"), f"{run}: {step} failed (exit {code}); "
                                "its last lines say why; rerun the same command to continue")
        atomic_write_text(shlex.join(cmd) + "\n", done)
    return os.path.join(split_dir, "metrics.json")


def summarize(docs: list[dict], labels: list[str]) -> dict:
    """Per split the model's and the mono copy's means; over splits their mean ± standard error (the
    sample standard deviation of the split means / sqrt(number of splits))."""
    from DiffBinaural.evaluate import FAIRPLAY_COLUMNS, mean_over_splits

    keys = [k for k, _ in FAIRPLAY_COLUMNS if all(k in d["model"]["mean"] for d in docs)]
    table = {"metrics": keys, "splits": {}, "mean": {}, "se": {}}
    for label, doc in zip(labels, docs):
        table["splits"][label] = {s: {k: doc[s]["mean"][k] for k in keys} for s in ("model", "mono_baseline")}
        table["splits"][label]["num_clips"] = doc["num_clips"]
    for system in ("model", "mono_baseline"):
        table["mean"][system], table["se"][system] = {}, {}
        for k in keys:  # the same numbers the printed table shows (NaN -> None: strict JSON)
            mean, se = mean_over_splits(docs, system, k)
            table["mean"][system][k] = mean if math.isfinite(mean) else None
            table["se"][system][k] = se if math.isfinite(se) else None
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", required=True, help="FAIR-Play in the loaders' layout (prepare_fairplay.py --out)")
    p.add_argument("--splits", default="5split", help="5split, 10split, or indices such as 1,3 (of --split_set)")
    p.add_argument("--split_set", choices=tuple(SPLIT_SETS), default=None, help="which splits the indices name")
    p.add_argument("--out", required=True, help="folder of the runs, the per-split JSONs and the table")
    p.add_argument("--config", default=None, help="Stage 1 preset (DiffBinaural/configs/) or JSON file")
    p.add_argument("--num_gpus", type=int, default=1, help="local workers of each training")
    p.add_argument("--train_args", default="", help="more flags of train_fairplay.py, one quoted string")
    p.add_argument("--test_args", default="", help="more flags of test_fairplay.py (sampling), one quoted string")
    p.add_argument("--eval_workers", type=int, default=2)
    p.add_argument("--pesq", action=argparse.BooleanOptionalAction, default=True, help="also score PESQ (slow)")
    args = p.parse_args()
    args.data_root, args.out = os.path.abspath(args.data_root), os.path.abspath(args.out)
    chosen = split_lists(args.data_root, args.splits, args.split_set)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(json.dumps({"flags": vars(args), "argv": sys.argv, "git": git_state()}, indent=2) + "\n",
                      os.path.join(args.out, "protocol.json"))
    paths = [run_split(run, lists, args) for run, lists in chosen]
    write_table(args.out, paths, [run for run, _ in chosen])


def write_table(out: str, paths: list[str], labels: list[str]) -> dict:
    """Print the papers' table and write ``table.md`` / ``table.json`` with each split's run record."""
    from DiffBinaural.evaluate import format_fairplay, read_result

    docs = [read_result(p) for p in paths]
    table = summarize(docs, labels)
    text = format_fairplay(docs, labels)
    runs = {}
    for label in labels:
        record = read_run_record(os.path.join(out, "ckpt", label)) or {}
        runs[label] = {"git": record.get("git"), "world_size": record.get("world_size"),
                       "config": record.get("flags", {}).get("config"), "argv": record.get("argv")}
    table["runs"] = runs
    lines = ["# FAIR-Play protocol", "", "```", text, "```", "", "Runs (the commit and flags of each training: "
             "ckpt/{split}/run.json):", ""]
    lines += [f"- {label}: commit {r['git'] and r['git'].get('commit')}"
              f"{' (uncommitted changes)' if r['git'] and r['git'].get('dirty') else ''}, preset {r['config']}, "
              f"world size {r['world_size']}" for label, r in runs.items()]
    with atomic_output(os.path.join(out, "table.md"), suffix=".md") as tmp, open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    atomic_write_text(json.dumps(table, indent=2) + "\n", os.path.join(out, "table.json"))
    print(text)
    print(f"wrote {os.path.join(out, 'table.md')} and table.json")
    return table


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
