"""``offline data``: build extra evaluation and training material from Debian packages.

- ``offline data asterisk``: real telephone speech, the Asterisk prompt sets (``apt-get download``
  and ``dpkg-deb -x``; no install, no root);
- ``offline data tts-spoofs``: classic synthetic speech (espeak-ng, flite, festival voices);
- ``offline data field``: the field list (:mod:`offline.recipes.field`) cross-validation reads.

Both write list files that ``offline evaluate --list`` and ``offline calibrate`` read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from offline.recipes import asterisk, field, tts_spoofs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data",
        help="build data sets (asterisk, tts-spoofs from Debian packages; the field list)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    sets = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")

    a = sets.add_parser("asterisk", help="real 8 kHz telephone prompts (5 languages, one speaker each)")
    a.add_argument("--dest", type=Path, default=Path("data/asterisk"), help="output folder (default: data/asterisk)")
    a.add_argument("--languages", nargs="+", default=list(asterisk.LANGUAGES), choices=asterisk.LANGUAGES)
    a.add_argument("--cache", type=Path, help="where the .deb files go (default: DEST/debs)")
    a.set_defaults(func=run_asterisk)

    t = sets.add_parser("tts-spoofs", help="espeak-ng, flite and festival voices as spoof systems")
    t.add_argument("--dest", type=Path, default=Path("data/tts_spoofs"), help="output folder (default: data/tts_spoofs)")
    t.add_argument("--systems", nargs="+", metavar="SYSTEM", choices=[v.system for v in tts_spoofs.VOICES],
                   help=f"voices to use (default: all): {', '.join(v.system for v in tts_spoofs.VOICES)}")
    t.add_argument("--texts", choices=["asterisk", "builtin"], default="asterisk",
                   help="sentences: the Asterisk prompts' texts in each voice's language (default; "
                   "needs `offline data asterisk`), or a built-in English list")
    t.add_argument("--asterisk-root", type=Path, default=Path("data/asterisk"))
    t.add_argument("--per-voice", type=int, default=100, help="sentences per voice (default 100; 0 = all)")
    t.add_argument("--seed", type=int, default=0, help="seed of the sentence draw")
    t.add_argument("--workers", type=int, default=2)
    t.set_defaults(func=run_tts_spoofs)

    register_field(sets)


def run_asterisk(args: argparse.Namespace) -> int:
    sets = asterisk.prepare_asterisk(args.dest, tuple(args.languages), args.cache)
    print(f"{'language':8} {'speaker':20} {'prompts':>7} {'minutes':>7}  list")
    for s in sets:
        speaker = s.prompts[0].speaker if s.prompts else "-"
        print(f"{s.language:8} {speaker:20} {len(s.prompts):7d} {s.seconds / 60:7.1f}  {s.list_file}")
    total = sum(s.seconds for s in sets)
    print(f"{'total':29} {sum(len(s.prompts) for s in sets):7d} {total / 60:7.1f}  (all languages in DEST: {args.dest / 'asterisk-all.txt'})")
    return 0


def run_tts_spoofs(args: argparse.Namespace) -> int:
    voices = [v for v in tts_spoofs.VOICES if not args.systems or v.system in args.systems]
    per_voice = args.per_voice or None
    with tqdm(unit="clip", desc="synthesising", disable=None) as bar:
        result = tts_spoofs.prepare_tts_spoofs(
            args.dest, voices, texts=args.texts, asterisk_root=args.asterisk_root, per_voice=per_voice,
            seed=args.seed, workers=args.workers, on_progress=bar.update,
        )
    print(f"{'system':34} {'clips':>5} {'minutes':>7}")
    for voice in voices:
        clips = [c for c in result.clips if c.system == voice.system]
        print(f"{voice.system:34} {len(clips):5d} {sum(c.seconds for c in clips) / 60:7.1f}")
    print(f"{'total':34} {len(result.clips):5d} {sum(c.seconds for c in result.clips) / 60:7.1f}  "
          f"(all systems in DEST: {args.dest / 'tts-all.txt'})")
    if result.failures:
        print(f"offline data: {len(result.failures)} clip(s) could not be synthesised:", file=sys.stderr)
        for path, reason in result.failures.items():
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


def register_field(sets: argparse._SubParsersAction) -> None:
    f = sets.add_parser("field", help="the field list for cross-validation: every clip with its source/system")
    f.add_argument("--field-data", type=Path, required=True, help="folder holding sources.tsv (e.g. ../shared/field-data)")
    f.add_argument("--asterisk-root", type=Path, default=Path("data/asterisk"))
    f.add_argument("--tts-root", type=Path, default=Path("data/tts_spoofs"))
    f.add_argument("--alm-add", type=Path, help="ALM-ADD root (e.g. ../shared/alm-add); omitted: not listed")
    f.add_argument("--out", type=Path, default=Path("data/field"), help="output folder (default: data/field)")
    f.set_defaults(func=run_field)


def run_field(args: argparse.Namespace) -> int:
    clips, notes = field.build_field_list(args.field_data, args.asterisk_root, args.tts_root, args.alm_add)
    out = field.write_field_list(args.out / "field.tsv", clips)
    print(f"{'origin':11} {'label':5} {'group':32} {'clips':>5} {'minutes':>7}")
    for origin, label, group, count, minutes in field.summary(clips):
        print(f"{origin:11} {label:5} {group:32} {count:5d} {minutes:7.1f}")
    for note in notes:
        print(f"offline data field: {note}", file=sys.stderr)
    print(f"{len(clips)} clips → {out}")
    return 0
