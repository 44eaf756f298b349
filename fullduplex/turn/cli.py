"""`fullduplex turn train` and `fullduplex turn eval`: the command-line face of the turn model."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError


def cmd_turn_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .features import DEFAULT_GROUPS, GROUPS
    from .model import DEFAULT_MODEL, FAST_MODEL
    from .train import TrainConfig, train

    groups = tuple(g.strip() for g in args.groups.split(",") if g.strip()) if args.groups else \
        tuple(g for g in DEFAULT_GROUPS if not (args.fast and g == "smart_turn"))
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or "silence" not in groups:
        raise UserError(f"--groups must name 'silence' and any of {', '.join(GROUPS)}; got {args.groups!r}")
    if args.items is not None and args.items <= 0:
        raise UserError(f"--items must be positive, not {args.items}")
    if args.trees is not None and args.trees <= 0:
        raise UserError(f"--trees must be positive, not {args.trees}")
    if not 0 <= args.target_cutoff < 1:
        raise UserError(f"--target-cutoff must be in [0, 1), not {args.target_cutoff}")
    cfg = TrainConfig.small(args.seed) if args.small else TrainConfig()
    data = replace(cfg.data, seed=args.seed, shared_dir=args.data,
                   **({"n_items": args.items} if args.items else {}),
                   **({"vap": False} if args.no_vap else {}),
                   **({"transcripts": args.transcripts} if args.transcripts else {}))
    gbm = replace(cfg.gbm, seed=args.seed, **({"n_trees": args.trees} if args.trees else {}))
    cfg = replace(cfg, data=data, gbm=gbm, groups=groups if (args.groups or not args.small) else cfg.groups,
                  target_cutoff=args.target_cutoff, conversations=args.conversations,
                  real=bool(args.conversations) or args.learn_from in ("real", "both"),
                  synthetic=args.learn_from in ("synthetic", "both"),
                  **({"real_weight": args.real_weight} if args.real_weight is not None else {}))
    if args.real_weight is not None and args.real_weight <= 0:
        raise UserError(f"--real-weight must be positive, not {args.real_weight}")
    out = args.out or (FAST_MODEL if args.fast else DEFAULT_MODEL)
    train(cfg, out, args.cache, progress=lambda msg: print(msg, file=sys.stderr), leave_one_out=args.leave_one_out)
    return 0


def cmd_turn_eval(args: argparse.Namespace) -> int:
    from .evaluate import EvalConfig, format_report, run_eval, write_report

    if args.window <= 0 or (args.hold_pause is not None and args.hold_pause < 0.2):
        raise UserError("--window must be positive and --hold-pause at least 0.2 s")
    cfg = EvalConfig(model=args.model, shared_dir=args.data, cache_dir=args.cache, window_s=args.window,
                     hold_pause_s=args.hold_pause, ablation=args.ablation, llm=args.llm,
                     conversations=args.conversations)
    results = run_eval(cfg, progress=lambda msg: print(msg, file=sys.stderr))
    path = write_report(results, args.out)
    print(format_report(results))
    print(f"\nreport: {path}, {path.with_suffix('.json')}")
    return 0


def add_turn_commands(sub) -> None:
    turn = sub.add_parser("turn", help="the predictive turn model: train it (synthesised or real speech), evaluate it leaving one recording out",
                          description="Architecture 4's turn model: P(the user is done) from prosody, transcript "
                                      "markers, Smart Turn v3.2 and the silence so far.")
    tsub = turn.add_subparsers(dest="turn_command", metavar="STEP")
    turn.set_defaults(func=lambda a: turn.print_help() or 2)
    t = tsub.add_parser("train", help="synthesise training speech (cached), fit the model, write its JSON file",
                        description="Learns from synthesised speech (default), the real pauses of the shared recordings (or your "
                                    "--conversations), or both. Deterministic given --seed; signals are cached under --cache.")
    t.add_argument("--out", default=None, help="model file (default fullduplex/turn/data/turn.json, or turn-fast.json with --fast)")
    t.add_argument("--fast", action="store_true", help="the model without Smart Turn (no ~60 ms call per pause)")
    t.add_argument("--groups", default=None, help="feature groups, comma-separated: silence,prosody,text,smart_turn,llm")
    t.add_argument("--items", type=int, default=None, help="scripted turns to synthesise (default 800)")
    t.add_argument("--trees", type=int, default=None, help="boosted trees (default 150)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--no-vap", action="store_true", help="leave the VAP phrase pairs out of training")
    t.add_argument("--transcripts", choices=["moonshine", "script"], default=None,
                   help="what the text signals read: Moonshine's transcript (default) or the script")
    t.add_argument("--target-cutoff", type=float, default=0.10,
                   help="false cut-off rate allowed on the synthetic holds when choosing the threshold (default 0.10)")
    t.add_argument("--small", action="store_true", help="a seconds-long run on synthesised speech only: 40 espeak turns, "
                                                       "script transcripts, no Smart Turn")
    t.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data beside the repo)")
    t.add_argument("--conversations", default=None, metavar="DIR",
                   help="learn from your own recorded conversations (instead of the shared ones): DIR holds one folder "
                        "per conversation with a mono .wav and an .rttm (who speaks when); every pause >= 200 ms becomes "
                        "a shift, a hold or a listener's backchannel")
    t.add_argument("--learn-from", choices=["synthetic", "real", "both"], default="synthetic",
                   help="synthesised speech and the VAP pairs (default: the committed turn.json), the real recordings' "
                        "pauses (turn-real.json: better left one recording out, slower live), or both")
    t.add_argument("--real-weight", type=float, default=None,
                   help="with --learn-from both: how many synthetic pauses one real pause weighs (default 3)")
    t.add_argument("--leave-one-out", default=None, metavar="DIR",
                   help="also write one model per real recording, trained without it, into DIR (with index.json): "
                        "`fullduplex bench run --turn-models DIR` runs each real scenario with a model that never heard it")
    t.add_argument("--cache", default="build/turn-data", help="cache folder (default build/turn-data)")
    t.set_defaults(func=cmd_turn_train)
    e = tsub.add_parser("eval", help="silence thresholds, Smart Turn and our model on real conversations and the VAP pairs",
                        description="Scores every pause >= 200 ms of the real conversations (shift vs hold from the "
                                    "RTTM labels), the VAP phrase pairs and real monologue pauses.")
    e.add_argument("--model", default=None, help="model file (default: the committed model)")
    e.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data beside the repo)")
    e.add_argument("--out", default="build/turn-eval", help="folder for report.md and report.json (default build/turn-eval)")
    e.add_argument("--ablation", action="store_true", help="also retrain and score each feature-group variant")
    e.add_argument("--llm", action="store_true", help="also measure the SmolLM2 end-of-utterance signal (slow)")
    e.add_argument("--window", type=float, default=1.0, help="a shift is detected if the detector fires within this (s, default 1.0)")
    e.add_argument("--hold-pause", type=float, default=None,
                   help="pause inserted in the long VAP phrases (s; default: drawn per clip as in training, median 0.55 s)")
    e.add_argument("--cache", default="build/turn-data", help="cache folder (default build/turn-data)")
    e.add_argument("--conversations", default=None, metavar="DIR",
                   help="score on these labelled conversations (one folder each: a .wav and an .rttm) instead "
                        "of the shared ones; the VAP pairs and monologues still come from --data")
    e.set_defaults(func=cmd_turn_eval)
