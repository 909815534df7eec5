"""Lua scripts for locks that have an owner (rq-scheduler's and RQ's have none)."""

from __future__ import annotations

# KEYS[1] = lock; ARGV = owner token. Delete the lock only if that owner holds it.
COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] = lock; ARGV = owner token, ttl ms. Take the lock if free, or extend it if ours.
ACQUIRE_OR_EXTEND = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1
elseif not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1
end
return 0
"""
