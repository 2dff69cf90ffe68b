"""Invalid configurations fail at once with a one-line reason."""

from __future__ import annotations

import pytest

from kvheal.model import Config, ConfigError, KVHealModel


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"tabs": 0}, "tabs must be at least 1"),
        ({"tabs": -3}, "tabs must be at least 1"),
        ({"per_tab": 0}, "per_tab must be at least 1"),
        ({"cap": 0}, "cap must be at least 1"),
        ({"tabs": "2"}, "tabs must be an integer"),
        ({"tabs": True}, "tabs must be an integer"),
        ({"variants": "dedupe,nope"}, "unknown variant 'nope'"),
        ({"variants": "dedupe,,sweeper"}, "empty flag"),
        ({"tabs": 25}, "beyond the encoding's limit of 24"),
        ({"tabs": 12, "per_tab": 2}, "cache values, beyond the encoding's limit"),
    ],
)
def test_bad_configs_rejected(kwargs, fragment):
    with pytest.raises(ConfigError) as err:
        Config.make(**kwargs)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_defaults_follow_spec():
    cfg = Config.make(tabs=3, per_tab=2)
    assert (cfg.messages, cfg.cap, cfg.variants) == (6, 6, frozenset())
    assert [cfg.owner(m) for m in range(6)] == [0, 1, 2, 0, 1, 2]
    assert Config.make(variants=" dedupe , sweeper").variants == {"dedupe", "sweeper"}
    assert Config.make(variants="seed").variants == frozenset()
    assert Config.make(variants="sweeper,dedupe").variant_label() == "dedupe,sweeper"


def test_add_sorts_by_timestamp_and_keeps_the_newest():
    model = KVHealModel(Config.make(tabs=3, cap=2))
    cv = model.cv
    c = cv.add[cv.code[(2,)]][0]
    assert cv.values[c] == (0, 2)
    assert cv.values[cv.add[c][1]] == (1, 2)  # (0,1,2) trimmed to the last 2
    assert cv.values[cv.add[cv.code[(1, 2)]][2]] == (2, 2)  # duplicates allowed without dedupe


def test_properties_that_apply():
    def names(v):
        return [p.name for p in KVHealModel(Config.make(variants=v)).properties()]

    assert names("") == ["AckedIsStored", "CacheFromStore", "NoDuplicates", "Converges", "PendingDrains"]
    assert names("keep_verifying") == ["AckedIsStored", "CacheFromStore", "NoDuplicates", "Converges"]


def test_action_names_follow_the_design():
    def names(v):
        return sorted({a.name for a in KVHealModel(Config.make(variants=v)).instances})

    assert names("") == [
        "HealKey",
        "HealRead",
        "HealWrite",
        "PollDone",
        "PollRead",
        "PostAck",
        "PostKey",
        "PostRead",
        "PostWrite",
    ]
    assert names("atomic_cache,sweeper") == [
        "HealCache",
        "HealKey",
        "PollDone",
        "PollRead",
        "PostAck",
        "PostCache",
        "PostKey",
        "SweepCache",
        "SweepList",
    ]
    assert "Crash" in names("tab_crash") and "PendingWrite" in names("shared_pending")
    model = KVHealModel(Config.make(variants="shared_pending"))
    assert model.action("HealKey", {"t": 1, "m": 0}).args == {"t": 1, "m": 0}
