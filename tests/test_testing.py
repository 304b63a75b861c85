from auditml.testing import memory_log


def test_memory_log_is_a_real_log() -> None:
    """memory_log appends, reads back, proves roots and verifies like a file-backed log."""
    with memory_log() as log:
        log.append("model.retire", subject={"model": "m", "version": "1"}, actor="t", imported=True)
        assert [r.event.action for r in log.events()] == ["log.init", "model.retire"]
        assert log.verify().size == 2
        assert log.root(2) == log.head().root


def test_memory_logs_are_independent() -> None:
    """Two memory logs share nothing."""
    with memory_log(origin="a.example/x") as a, memory_log(origin="b.example/y") as b:
        a.append("model.retire", subject={"model": "m"}, actor="t", imported=True)
        assert (a.head().size, b.head().size) == (2, 1)
