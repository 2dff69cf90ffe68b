"""The divergence report, pinned: a scripted lockstep run of the compare-and-swap that
ignores the version (the stale swap of post 0 overwrites post 1's update)."""

from __future__ import annotations

import pytest

from kvheal.conformance.faults import FAULTS
from kvheal.conformance.lockstep import Divergence, lockstep_machine
from kvheal.conformance.system import message_ids
from kvheal.model import Config

GOLDEN = """\
lockstep divergence (tabs=2 per_tab=1 cap=2 variant=atomic_cache): no model step of post 0 explains its cas recent:comments; first difference: cache

step  action                                                                               model state (changed fields)     implementation state
   0  initial                                                                              initial                          (same)
   1  PostKey(m=0): get comment:#0, put comment:#0 → PostKey(m=0)                          stored=[0] post[0]=KeyWritten    (same)
   2  PostKey(m=1): get comment:#1, put comment:#1 → PostKey(m=1)                          stored=[0,1] post[1]=KeyWritten  (same)
   3  release post 0: get_versioned recent:comments → (stutter)                                                             (same)
   4  PostCache(m=1): get_versioned recent:comments, cas recent:comments → PostCache(m=1)  cache=[1] post[1]=CacheWritten   (same)
   5  release post 0: cas recent:comments → (stutter)                                                                       cache=[0] post[0]=CacheWritten ◀

state after step 5:
  field         model         implementation
  stored        [0,1]         [0,1]
  cache         [1]           [0]  ◀ first difference
  post[0]       KeyWritten    CacheWritten  ◀
  post[1]       CacheWritten  CacheWritten
  pending[0]    []            []
  pending[1]    []            []
  poll[0]       Idle          Idle
  poll[1]       Idle          Idle
  heal[0]       Idle          Idle
  heal[1]       Idle          Idle
  alive[0]      true          true
  alive[1]      true          true
  sweep         Idle          Idle"""


def test_divergence_table_golden():
    fault = FAULTS["cas_ignores_version"]
    machine = lockstep_machine(Config.make(tabs=2, variants="atomic_cache"), **fault.hooks)()
    try:
        machine.start()
        machine.do("PostKey", m=0)
        machine.do("PostKey", m=1)
        machine.release_call(0)  # post 0 reads the cache and its version
        machine.do("PostCache", m=1)  # post 1 swaps in [1]
        with pytest.raises(Divergence) as info:
            machine.release_call(0)  # post 0's stale swap succeeds anyway
    finally:
        machine.teardown()
    assert str(info.value) == GOLDEN


def test_the_same_script_passes_without_the_fault():
    machine = lockstep_machine(Config.make(tabs=2, variants="atomic_cache"))()
    try:
        machine.start()
        machine.do("PostKey", m=0)
        machine.do("PostKey", m=1)
        machine.release_call(0)
        machine.do("PostCache", m=1)
        machine.release_call(0)  # the swap fails: a stutter
        machine.release_call(0)  # read again
        machine.release_call(0)  # swap: PostCache(m=0)
        assert machine.model.view(machine.state)["cache"] == (0, 1)
        assert machine.system.cache_ids() == list(message_ids(2))
    finally:
        machine.teardown()
