"""HTTP routes (aiohttp) and the middlewares that authenticate and map errors once."""
