"""What opaque positions cost the daemon: microseconds per position and per event frame.

    python -m bench.positions [--rounds 7] [--number 50000]

The hub turns each published event into one frame (bridge/protocol.py
event_frame with the event's position), once, whatever the number of
subscribers; a resume decodes one position. This times, as the median of
`rounds` runs of `number` calls each (timeit, one process, no database):

- encode: Positions.encode, what every event pays once;
- decode: Positions.decode of a good position (one key), and with the key
  being the second of two (a rotation's fallback);
- the old readable form (`f"{db_id}-{tick}-{id}"`), for comparison;
- a whole event frame with each, which is the per-event cost fan-out sees.
"""

from __future__ import annotations

import argparse
import statistics
import timeit

from bridge import protocol
from bridge.positions import Positions

DB = "0123abcd"
SECRET = "bench-secret-key-of-sufficient-length-0123456789"
POS = (123_456, 98_765_432)


def per_call_us(stmt: object, number: int, rounds: int) -> float:
    """Median microseconds per call over `rounds` runs of `number` calls."""
    timer = timeit.Timer(stmt)  # type: ignore[arg-type]
    return statistics.median(timer.repeat(rounds, number)) / number * 1e6


def measure(number: int = 50_000, rounds: int = 7) -> dict[str, float]:
    codec = Positions([SECRET])
    rotated = Positions(["the-next-secret-key-of-sufficient-length-01234", SECRET])
    text = codec.encode(DB, POS)

    def old(pos: tuple[int, int] = POS) -> str:
        return f"{DB}-{pos[0]}-{pos[1]}"

    def frame(position: str) -> bytes:
        return protocol.event_frame("example_task", position, "public.example_task", "UPDATE",
                                    ["42"], 1)

    return {
        "encode_us": per_call_us(lambda: codec.encode(DB, POS), number, rounds),
        "decode_us": per_call_us(lambda: codec.decode(text, DB), number, rounds),
        "decode_fallback_key_us": per_call_us(lambda: rotated.decode(text, DB), number, rounds),
        "decode_refused_us": per_call_us(lambda: codec.decode("A" * 40, DB), number, rounds),
        "old_format_us": per_call_us(old, number, rounds),
        "event_frame_opaque_us": per_call_us(lambda: frame(codec.encode(DB, POS)), number,
                                             rounds),
        "event_frame_old_us": per_call_us(lambda: frame(old()), number, rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for name, value in measure(args.number, args.rounds).items():
        print(f"{name:28} {value:7.3f}")


if __name__ == "__main__":
    main()
