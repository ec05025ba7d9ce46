"""With ``fill_to_target``, a summary shorter than its budget leaves room: the compaction
keeps more recent turns verbatim in it, and stays under the low watermark."""

from compactor import MessageCompactor
from compactor._plan import PlanConfig
from compactor._tokens import HeuristicCounter


class _Fixed:
    """A summarizer whose summary is ``words`` words long, whatever it is asked."""

    def __init__(self, words: int) -> None:
        self.words = words
        self.name = f"fixed{words}"

    async def summarize(self, request) -> str:
        return " ".join(["fact"] * self.words)


def _history() -> list[dict]:
    msgs: list[dict] = []
    for i in range(60):
        msgs.append({"role": "user", "content": f"question {i}: " + "word " * 40})
        msgs.append({"role": "assistant", "content": f"answer {i}: " + "text " * 40})
    msgs.append({"role": "user", "content": "next?"})
    return msgs


async def test_short_summary_keeps_more_recent_messages_under_the_low_watermark():
    """With a 5-word summary the result keeps more of the newest messages than with a
    summary that fills its budget, and its tokens stay under low_watermark x window."""
    config = PlanConfig(high_watermark=0.8, low_watermark=0.5, max_summary_tokens=800,
                        fill_to_target=True)
    counter = HeuristicCounter()
    window = 4000
    kept = {}
    for words in (5, 700):
        comp = MessageCompactor(counter=counter, config=config, summarizer=_Fixed(words))
        msgs = _history()
        r = await comp.compact_if_needed(msgs, window=window)
        assert r.compacted
        # the newest messages kept verbatim: the longest suffix of the input in the result
        n = 0
        while n < len(r.messages) - 1 and r.messages[-1 - n] == msgs[-1 - n]:
            n += 1
        kept[words] = n
        if words == 5:
            assert r.tokens_after <= config.low_watermark * r.window
    assert kept[5] > kept[700]
