"""Batch workflows: the runner that claims items from the Store's queue and the processing of one item."""
