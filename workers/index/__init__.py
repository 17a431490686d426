"""The Redis index: the only code that knows key names and Lua scripts. Every decision,
index write and publication happens here, atomically, in Redis."""
