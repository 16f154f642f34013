# %% [markdown]
# # Solutions: pipes and redirect
#
# The answers to the exercises at the end of `02-pipes-and-redirect`.

# %%
%load_ext procmagic
from procmagic import Process

def two_words(p):
    p.write(b"one")
    p.write(b"two")

# %% [markdown]
# **1. dgram, one `read()`** returns `b'one'`: a datagram pipe keeps each `write` as its own
# message, and one `read` takes one message. `b'two'` waits for the next `read`.

# %% expect=["b'one'\\nb'two'"]
p = Process(two_words, pipe="dgram")
p.start()
p.join()
print(p.read())
print(p.read())

# %% [markdown]
# **2. stream, one `read()`** returns `b'onetwo'`: a stream is bytes without boundaries, and
# both writes were in the pipe when the parent read. (Had the parent read between the two
# writes, it would have got `b'one'`: on a stream, how the bytes are split depends on timing.
# Frame your messages, with lines or length prefixes, or use dgram.)

# %% expect=["b'onetwo'"]
p = Process(two_words, pipe="stream")
p.start()
p.join()
print(p.read())
