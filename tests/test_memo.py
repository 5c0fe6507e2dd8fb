"""The bounded memo: each value made once while its key is among the most recent, the oldest forgotten first."""

from cargohold.memo import Memo


def test_values_are_made_once_and_the_oldest_is_forgotten_first() -> None:
    made: list[int] = []
    memo: Memo[int, str] = Memo(size=2)

    def make(key: int) -> str:
        made.append(key)
        return f"v{key}"

    assert memo.make(1, lambda: make(1)) == "v1"
    assert memo.make(1, lambda: make(1)) == "v1"
    memo.make(2, lambda: make(2))
    memo.make(3, lambda: make(3))  # 1 is the oldest: forgotten
    assert memo.get(1) is None and memo.get(2) == "v2" and memo.get(3) == "v3"
    assert memo.put(2, "again") == "again" and memo.get(3) == "v3"  # a known key replaces its value, evicting none
    assert made == [1, 2, 3]
