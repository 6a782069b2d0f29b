"""Test dummies: tiny corpora, cuts, lexicons and FSTs built on the fly for tests.

Nothing here is used by the toolkit itself; it exists so that tests (ours and a
user's) can build realistic inputs in a temporary directory in milliseconds.
"""
