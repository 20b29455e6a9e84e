"""botline: a self-hostable asyncio chat-bot runtime."""
