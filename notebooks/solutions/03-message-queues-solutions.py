# %% [markdown]
# # Solutions: message queues
#
# The answers to the exercises at the end of `03-message-queues`.

# %%
%load_ext procmagic
from procmagic import Process

# %% [markdown]
# **1. Three pushes, three pops** come back in the order they went in: `a`, `b`, `c`. In
# balance mode `pop()` takes the oldest message of any type: a queue is first in, first out.

# %% expect=["\\[b'a', b'b', b'c'\\]"]
box = Process(lambda p: None)
box.use_queue(nowait=True)
for word in ["a", "b", "c"]:
    box.push(word)
print([box.pop() for _ in range(3)])
box.free_queue()

# %% [markdown]
# **2. Three pushed, one popped:** 2 messages and 8 bytes (`two` and `three`). The oldest,
# `one`, was popped. The queue counts the messages' bytes only, not any header.

# %% expect=["messages: 2 bytes: 8"]
box = Process(lambda p: None)
box.use_queue(nowait=True)
for word in ["one", "two", "three"]:
    box.push(word)
box.pop()
stat = box.stat_queue()
print("messages:", stat.messages, "bytes:", stat.bytes)
box.free_queue()
