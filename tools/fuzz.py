"""The long fuzzing run (CPython, hypothesis): the targets of tests/test_fuzz_targets.py, each
with many more inputs than CI gives them (issue 7 item 6).

    python tools/fuzz.py [--examples N] [--targets a,b] [--max-seconds S] [--seed N]
                         [--chunk N] [--json PATH]

Each target runs in chunks of --chunk inputs, every chunk with its own seed (--seed + chunk
number, so a failure can be replayed), until it has run --examples inputs (default 100000) or
its share of --max-seconds is spent (what is left of it, split evenly over the targets still
to run, so time a fast target does not need goes to the later ones; default: no limit). A failing
chunk is recorded (hypothesis's shrunk example and error) and the target goes on with the next
chunk, up to --max-failures failures. Prints one line per target and writes a JSON report
(default build/fuzz-results.json). Exit status 1 if any target failed.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import hypothesis  # noqa: E402

import test_fuzz_targets as ft  # noqa: E402


def run_target(name, examples, seconds, seed, chunk, max_failures):
    out = {"inputs": 0, "chunks": 0, "seconds": 0.0, "failures": []}
    start = time.monotonic()
    i = 0
    while out["inputs"] < examples and len(out["failures"]) < max_failures:
        if seconds is not None and time.monotonic() - start >= seconds:
            out["stopped"] = "time budget"
            break
        n = min(chunk, examples - out["inputs"])
        s = seed + i
        test = hypothesis.seed(s)(ft.hypothesis_test(name, n, database=None, print_blob=True,
                                                     report_multiple_bugs=False))
        before = ft.COUNTS[name]
        try:
            test()
        except Exception as e:  # noqa: BLE001 - a failing target is the result, not a crash
            text = str(e)
            out["failures"].append({"seed": s, "chunk_inputs": n, "error": type(e).__name__,
                                    "detail": text[-3000:]})
            print("  %s: FAILURE with seed %d: %s" % (name, s, text.strip().splitlines()[-1][:200]),
                  flush=True)
        out["inputs"] += ft.COUNTS[name] - before
        out["chunks"] += 1
        i += 1
    out["seconds"] = round(time.monotonic() - start, 1)
    out["inputs_per_second"] = round(out["inputs"] / out["seconds"], 1) if out["seconds"] else None
    return out


def git(*args):
    try:
        return subprocess.run(("git", "-C", ROOT) + args, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=100000, help="inputs per target (default 100000)")
    ap.add_argument("--targets", default=",".join(ft.TARGETS), help="comma-separated (default: all)")
    ap.add_argument("--max-seconds", type=float, default=None, help="overall time budget")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=2000, help="inputs per hypothesis run")
    ap.add_argument("--max-failures", type=int, default=3, help="per target")
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "fuzz-results.json"), metavar="PATH")
    args = ap.parse_args(argv)
    names = [n for n in args.targets.split(",") if n]
    unknown = [n for n in names if n not in ft.TARGETS]
    if unknown or args.examples < 1 or args.chunk < 1:
        ap.error("unknown targets %s (known: %s)" % (unknown, ", ".join(ft.TARGETS)) if unknown
                 else "--examples and --chunk must be >= 1")
    report = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv), "commit": git("rev-parse", "HEAD"),
              "uncommitted_library_changes": bool(git("status", "--porcelain", "dtls_lite")),
              "python": platform.python_version(), "hypothesis": hypothesis.__version__,
              "examples_per_target": args.examples, "max_seconds": args.max_seconds, "seed": args.seed,
              "targets": {}}
    start = time.monotonic()
    print("%-18s %9s %8s %8s  %s" % ("target", "inputs", "seconds", "per s", "failures"), flush=True)
    for i, name in enumerate(names):
        share = None  # what is left of the budget, split over the targets still to run
        if args.max_seconds is not None:
            share = max(args.max_seconds - (time.monotonic() - start), 0) / (len(names) - i)
        r = run_target(name, args.examples, share, args.seed, args.chunk, args.max_failures)
        report["targets"][name] = r
        print("%-18s %9d %8.1f %8.1f  %d%s" % (name, r["inputs"], r["seconds"], r["inputs_per_second"] or 0,
                                              len(r["failures"]),
                                              " (stopped: time budget)" if r.get("stopped") else ""), flush=True)
    report["seconds"] = round(time.monotonic() - start, 1)
    report["inputs"] = sum(r["inputs"] for r in report["targets"].values())
    report["failed_targets"] = sorted(n for n, r in report["targets"].items() if r["failures"])
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    print("%d inputs in %.0f s; failed targets: %s; wrote %s" % (
        report["inputs"], report["seconds"], ", ".join(report["failed_targets"]) or "none", args.json))
    return 1 if report["failed_targets"] else 0


if __name__ == "__main__":
    sys.exit(main())
