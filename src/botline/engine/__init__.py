"""The conversation engine: sessions, ordering, limits and running turns for stateful channels."""
