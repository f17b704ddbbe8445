"""SIGKILL a ``mgdepth train`` run again and again; every restart (``--resume auto``) must continue from the last
complete checkpoint with no corrupt file, and the end result must equal an uninterrupted run's.

    .venv/bin/python bench/bench_kill_resume.py [--kills 20] [--max-steps 80] [--seed 0]
                                                [--results docs/results/kill_resume.json]

A tiny Manydepth run on the synthetic set (64×64, batch 2, 8 steps per epoch, teacher frozen from epoch 3, a
checkpoint every 4 steps, TensorBoard every 2 steps) runs once uninterrupted, then again under fire: each kill
(seeded RNG) is one of

* ``step``: a random 1–8 steps past the checkpoint it resumed from, then a random fraction of a step's time;
* ``weights_write``: 1–6 steps past it, the moment the next temporary weights folder (``models/.weights_*``)
  appears, plus 0–30 ms;
* ``state_write``: likewise when the temporary ``.state.pt.*.tmp`` appears, plus 0–20 ms;
* ``startup``: 10–90 % of the time a restart takes until its progress bar appears (imports, data, model, loading
  the checkpoint; the shortest restart so far sets it).

``mgdepth train`` has no evaluation phase (evaluation is ``mgdepth eval``, which only reads weights), so there is no
kill during an eval. Where a kill landed is read off the run folder at that moment (temporary files) and the
progress bar. After each kill: ``state.pt`` and every weights folder must load (all six networks), the restart must
report resuming from the step ``state.pt`` holds, and the stale temporaries must be gone once it trains. Steps lost =
steps reached (progress bar) − steps in the checkpoint. At the end the last restart runs to ``--max-steps`` and its
weights are compared with the uninterrupted run's, tensor by tensor. One torch thread per run (``--threads``), so
the two runs compute alike. Writes bench/results/kill_resume.json (``--results`` elsewhere).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from results_io import RESULTS, write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mgdepth_core.models.weights import NETWORK_FILES  # noqa: E402
from mgdepth_core.torch_files import TorchFileError, load_weights_only  # noqa: E402
from mgdepth_core.train import checkpoints  # noqa: E402

KINDS = ["step"] * 8 + ["weights_write"] * 5 + ["state_write"] * 4 + ["startup"] * 3
PROGRESS = re.compile(r"epoch (\d+)/\d+:[^|\r\n]*\|[^|\r\n]*\|\s*(\d+)/(\d+) ")
RESUMED = re.compile(r"resumed \S+ from \S+ \(epoch \d+, step (\d+)\)")


def train_config(log_dir: Path, max_steps: int, seed: int) -> dict:
    """2 sequences × 8 targets = 16 samples, batch 2: 8 steps per epoch."""
    return {"model": {"method": "manydepth", "height": 64, "width": 64, "pretrained": False, "num_depth_bins": 8},
            "data": {"dataset": "synthetic", "height": 64, "width": 64, "num_workers": 0,
                     "synthetic_sequences": 2, "synthetic_frames": 10},
            "optim": {"batch_size": 2, "epochs": max_steps // 8 + 2, "freeze_teacher_epoch": 3},
            "losses": {"automask_warmup_steps": 10},
            "log_dir": str(log_dir), "log_frequency": 2, "save_every_steps": 4, "max_steps": max_steps,
            "seed": seed, "device": "cpu"}


class TrainProcess:
    """One ``mgdepth train --config CONFIG --run-dir RUN --resume auto`` process, its output in a log file."""

    def __init__(self, config_file: Path, run_dir: Path, log: Path, threads: int) -> None:
        script = shutil.which("mgdepth", path=str(Path(sys.executable).parent))
        program = [script] if script else [sys.executable, "-m", "mgdepth_core.cli"]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.log = log
        self.started = time.monotonic()
        with open(log, "w") as handle:
            self.process = subprocess.Popen([*program, "train", "--config", str(config_file), "--run-dir",
                                             str(run_dir), "--resume", "auto"], stdout=handle,
                                            stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def progress(self, steps_per_epoch: int) -> int | None:
        """Optimisation steps reached so far by the progress bar (None before the first bar)."""
        bars = PROGRESS.findall(self.text())
        if not bars:
            return None
        epoch, count, _ = (int(v) for v in bars[-1])
        return (epoch - 1) * steps_per_epoch + count

    def resumed_from(self) -> int | None:
        """The step this process reported resuming from; 0 for a fresh start, None before it said either."""
        text = self.text()
        match = RESUMED.search(text)
        return int(match.group(1)) if match else (0 if PROGRESS.search(text) else None)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def temporaries(run_dir: Path) -> set[str]:
    """Temporary files and folders in the run folder and models/ (names starting with a dot)."""
    names = {p.name for p in run_dir.glob(".*")}
    if (run_dir / "models").is_dir():
        names |= {f"models/{p.name}" for p in (run_dir / "models").glob(".*")}
    return names


def corrupt_files(run_dir: Path) -> list[str]:
    """Everything a user could load that does not load: state.pt, and each file of every weights folder."""
    problems = []
    if (run_dir / checkpoints.STATE_FILE).exists():
        try:
            checkpoints.load_checkpoint(run_dir)
        except (OSError, ValueError, KeyError) as error:
            problems.append(f"state.pt: {error}")
    for folder in sorted((run_dir / "models").glob("weights_*")) if (run_dir / "models").is_dir() else []:
        for name in NETWORK_FILES:
            try:
                load_weights_only(folder / f"{name}.pth", "weights")
            except (OSError, TorchFileError) as error:
                problems.append(f"{folder.name}/{name}.pth: {error}")
        if not (folder / "mgdepth.yaml").is_file():
            problems.append(f"{folder.name}/mgdepth.yaml missing")
    return problems


def checkpoint_step(run_dir: Path) -> int:
    return int(checkpoints.load_checkpoint(run_dir)[0]["step"]) if checkpoints.has_checkpoint(run_dir) else 0


def wait_for(predicate, timeout: float, period: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(period)
    return True


def reference_run(config_file: Path, run_dir: Path, log: Path, threads: int, steps_per_epoch: int) -> dict:
    """The uninterrupted run; its start-up time (until the progress bar) and seconds per step set the kill times."""
    run = TrainProcess(config_file, run_dir, log, threads)
    first = None
    while run.process.poll() is None:
        progress = run.progress(steps_per_epoch)
        if first is None and progress is not None:
            first = (time.monotonic() - run.started, progress)
        time.sleep(0.02)
    if run.process.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed ({run.process.returncode}): {run.text()[-3000:]}")
    total = time.monotonic() - run.started
    steps = checkpoint_step(run_dir)
    return {"seconds": total, "startup_s": first[0],
            "step_s": (total - first[0]) / max(steps - first[1], 1), "steps": steps}


def kill_once(kind: str, run: TrainProcess, run_dir: Path, rng: np.random.Generator, timing: dict,
              steps_per_epoch: int) -> dict:
    """Kill ``run`` as ``kind`` says; what it had reached and what the run folder held at that moment."""
    start = checkpoint_step(run_dir)
    alive = lambda: run.process.poll() is None  # noqa: E731
    if kind == "startup":
        delay = rng.uniform(0.1, 0.9) * timing.get("restart_s", timing["startup_s"])
        time.sleep(max(0.0, run.started + delay - time.monotonic()))
    else:
        target = start + int(rng.integers(1, 9) if kind == "step" else rng.integers(1, 7))
        wait_for(lambda: not alive() or (run.progress(steps_per_epoch) or 0) >= target, 3600, 0.02)
        if kind == "step":
            time.sleep(rng.uniform(0, 1) * timing["step_s"])
        else:
            pattern = "models/.weights_" if kind == "weights_write" else ".state.pt."
            wait_for(lambda: not alive() or any(n.startswith(pattern) and ".old-" not in n
                                                for n in temporaries(run_dir)), 3600)
            time.sleep(rng.uniform(0, 0.03 if kind == "weights_write" else 0.02))
    if not alive():
        return {"kind": kind, "missed": f"the run had exited ({run.process.returncode})"}
    progress = run.progress(steps_per_epoch)
    at_kill = temporaries(run_dir)
    run.kill()
    landed = ("weights_write" if any(n.startswith("models/.weights_") for n in at_kill)
              else "state_write" if any(n.startswith(".state.pt.") for n in at_kill)
              else "startup" if progress is None or progress <= start else "step")
    saved = checkpoint_step(run_dir)
    return {"kind": kind, "landed": landed, "seconds_after_start": time.monotonic() - run.started,
            "steps_reached": max(progress or 0, saved), "checkpoint_step": saved,
            "steps_lost": max(progress or 0, saved) - saved, "corrupt_files": corrupt_files(run_dir),
            "temporaries_after_kill": sorted(temporaries(run_dir))}


def check_restart(pending: list[dict], run: TrainProcess, run_dir: Path, steps_per_epoch: int,
                  timing: dict) -> None:
    """Add to each kill in ``pending`` (the last, and the start-up kills just before it, which write nothing) the
    step the restart ``run`` resumed from, the kill's temporaries still there once it trains, and whether the kill
    was survived (no corrupt file, resumed from the checkpoint, no stale leftovers); empties ``pending``.
    ``timing["restart_s"]``: the shortest time to the progress bar of a restart so far."""
    if not pending:
        return
    wait_for(lambda: run.process.poll() is not None or run.progress(steps_per_epoch) is not None, 3600, 0.02)
    timing["restart_s"] = min(timing.get("restart_s", np.inf), time.monotonic() - run.started)
    resumed_from = run.resumed_from()
    wait_for(lambda: run.process.poll() is not None
             or (run.progress(steps_per_epoch) or 0) > resumed_from, 3600, 0.05)
    now = temporaries(run_dir)
    for kill in pending:
        kill["resumed_from"] = resumed_from
        kill["stale_temporaries_after_restart"] = sorted(set(kill["temporaries_after_kill"]) & now)
        kill["survived"] = (not kill["corrupt_files"] and resumed_from == kill["checkpoint_step"]
                            and not kill["stale_temporaries_after_restart"])
    pending.clear()


def final_weights(run_dir: Path) -> dict:
    state, folder = checkpoints.load_checkpoint(run_dir)
    return {"step": int(state["step"]), "folder": folder.name,
            "networks": {name: load_weights_only(folder / f"{name}.pth", "weights") for name in NETWORK_FILES}}


def compare(a: dict, b: dict) -> float:
    """Largest absolute difference over every tensor of every network (inf where the keys differ)."""
    worst = 0.0
    for name in NETWORK_FILES:
        if a["networks"][name].keys() != b["networks"][name].keys():
            return float("inf")
        for key, value in a["networks"][name].items():
            other = b["networks"][name][key]
            if hasattr(value, "float"):
                worst = max(worst, float((value.float() - other.float()).abs().max()) if value.numel() else 0.0)
            elif value != other:
                worst = max(worst, abs(float(value) - float(other)))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times (the training seed is 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each training process")
    parser.add_argument("--results", type=Path, default=RESULTS / "kill_resume.json")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    kinds = [KINDS[i % len(KINDS)] for i in rng.permutation(max(args.kills, len(KINDS)))][: args.kills]
    steps_per_epoch = 8
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="mgdepth_kill_") as folder:
        root = Path(folder)
        config_file = root / "tiny.yaml"
        config_file.write_text(yaml.safe_dump(train_config(root, args.max_steps, 1)))
        print("uninterrupted run ...", flush=True)
        timing = reference_run(config_file, root / "straight", root / "straight.log", args.threads, steps_per_epoch)
        print(f"  {timing['steps']} steps in {timing['seconds']:.0f} s (start-up {timing['startup_s']:.0f} s, "
              f"{timing['step_s']:.2f} s per step)", flush=True)
        run_dir = root / "killed"
        kills: list[dict] = []
        pending: list[dict] = []  # kills whose restart is still to be checked
        run = TrainProcess(config_file, run_dir, root / "killed_0.log", args.threads)
        for index, kind in enumerate(kinds):
            if kind != "startup":  # a start-up kill strikes before the restart could be checked
                check_restart(pending, run, run_dir, steps_per_epoch, timing)
            kill = kill_once(kind, run, run_dir, rng, timing, steps_per_epoch)
            kills.append(kill)
            pending += [kill] if "missed" not in kill else []
            print(f"  kill {index + 1:>2} ({kind:>13}): landed {kill.get('landed', '-'):>13}, step "
                  f"{kill.get('steps_reached', '-')}, checkpoint {kill.get('checkpoint_step', '-')}", flush=True)
            run = TrainProcess(config_file, run_dir, root / f"killed_{index + 1}.log", args.threads)
        check_restart(pending, run, run_dir, steps_per_epoch, timing)
        run.process.wait()
        final_ok = run.process.returncode == 0
        straight, resumed = final_weights(root / "straight"), final_weights(run_dir)
        difference = compare(straight, resumed)
        final_corrupt = corrupt_files(run_dir)
    made = [kill for kill in kills if "missed" not in kill]
    lost = [kill["steps_lost"] for kill in made]
    results = {
        "command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "config": train_config(Path("<tmp>"), args.max_steps, 1), "threads": args.threads,
        "uninterrupted": timing, "kills": kills,
        "kills_made": len(made), "kills_survived": sum(kill["survived"] for kill in made),
        "landed": {where: sum(kill["landed"] == where for kill in made)
                   for where in ("step", "weights_write", "state_write", "startup")},
        "steps_lost_per_kill": lost, "steps_lost_mean": float(np.mean(lost)) if lost else float("nan"),
        "steps_lost_max": max(lost, default=0),
        "final_run_exit_ok": final_ok, "final_corrupt_files": final_corrupt,
        "final_step": {"uninterrupted": straight["step"], "killed_and_resumed": resumed["step"]},
        "weights_max_abs_difference": difference, "weights_identical": difference == 0.0,
        "wall_s": time.time() - started,
    }
    print(f"\nbench_kill_resume: {len(made)} SIGKILLs of `mgdepth train` (max_steps {args.max_steps})")
    for index, kill in enumerate(kills):
        print(f"  kill {index + 1:>2} ({kill['kind']:>13}): landed {kill.get('landed', '-'):>13}, step "
              f"{kill.get('steps_reached', '-')}, checkpoint {kill.get('checkpoint_step', '-')}, resumed from "
              f"{kill.get('resumed_from', '-')}, survived {kill.get('survived', kill.get('missed'))}")
    print(f"{'measure':<44}{'value':>20}")
    print(f"{'kills survived (resume from last checkpoint)':<44}{results['kills_survived']:>14} / {len(made):<3}")
    print(f"{'landed: step / weights / state / start-up':<44}{' / '.join(map(str, results['landed'].values())):>20}")
    mean, most = results["steps_lost_mean"], results["steps_lost_max"]
    print(f"{'steps lost per kill: mean / max':<44}{mean:>14.2f} / {most:<3}")
    print(f"{'steps lost per kill':<44}{' '.join(map(str, lost)):>20}")
    print(f"{'corrupt files after all kills':<44}{len(final_corrupt):>20}")
    print(f"{'final step: uninterrupted / killed':<44}{straight['step']:>14} / {resumed['step']:<3}")
    print(f"{'weights: max |difference| to uninterrupted':<44}{difference:>20.3g}")
    write_results(results, args.results)
    return 0 if final_ok and results["kills_survived"] == len(made) and difference == 0.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
