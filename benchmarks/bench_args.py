"""Trailing config overrides of a benchmark's command line."""
import argparse


def parse_with_overrides(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser``'s arguments plus trailing ``KEY VALUE`` config overrides (``args.opts``).
    A list option swallows what follows it, so overrides may start with ``--``."""
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides of every stage; after a list option, start "
                             "them with -- (e.g. --seeds 0 1 -- SOLVER.MAX_ITER 10)")
    args = parser.parse_args(argv)
    args.opts = args.opts[1:] if args.opts[:1] == ["--"] else args.opts
    return args
