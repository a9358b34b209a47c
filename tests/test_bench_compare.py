"""bench/compare.py's arithmetic: when a change happened, and which reaction answers it.

The full run of 8f55100 counted one tab's refetch against the next change,
13 s later: the change's time was taken when the writer had read its
COMMIT's answer, and PostgreSQL wakes the daemon's LISTEN before it answers
the writer, so on a busy machine a tab can ask first. These tests pin the
bench's fix: a change's time is the writer's send, and reactions between the
send and the answer are counted, not lost.
"""

from __future__ import annotations

from bench import compare


def test_a_reaction_before_the_writers_answer_answers_that_change() -> None:
    """Staleness is measured from the send: a tab that asks before the answer is not missed."""
    sent, returned = [10.0, 23.0], [10.004, 23.004]
    tabs = [[10.002, 23.010],  # the first tab served asked before the writer read its answer
            [10.006, 23.012]]
    result = compare._staleness(sent, tabs, "s")
    assert result["s_missed"] == 0
    assert result["s_samples_ms"] == [2.0, 6.0, 10.0, 12.0]
    assert compare._before(sent, returned, tabs) == 1
    # Measured from the answer, as before the fix, the first tab's change 1 went to change 2.
    old = compare._staleness(returned, tabs, "s")
    assert max(old["s_samples_ms"]) > 13000


def test_before_counts_only_the_tabs_a_change_concerns() -> None:
    """With owners (f_own), only tab owner % 100's reaction is looked at."""
    tabs = [[] for _ in range(100)]
    tabs[7] = [1.001]
    tabs[8] = [1.001]
    assert compare._before([1.0], [1.002], tabs, [7]) == 1
    assert compare._before([1.0], [1.002], tabs, [9]) == 0
    assert compare._before([1.0], [1.0005], tabs, [7]) == 0  # after the answer: not early


def test_frames_sent_reads_each_endpoints_counter() -> None:
    text = ('# HELP bridge_frames_sent_total Frames written to clients\n'
            '# TYPE bridge_frames_sent_total counter\n'
            'bridge_frames_sent_total{endpoint="v1"} 4020.0\n'
            'bridge_frames_sent_total{endpoint="legacy"} 1.9e+03\n'
            'bridge_frames_sent_created{endpoint="v1"} 1.7e+09\n')
    assert compare.frames_sent(text) == {"v1": 4020, "legacy": 1900}
